"""Typed errors for expected faults.

Every fault a user can cause (bad file, bad value, server failure) is an ``EtlError``: the CLI prints it
as one line ``error: <what> (<where>)`` and exits with its code, without a traceback unless ``--debug``.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EtlError(Exception):
    """An expected fault, reported to the user as one line."""

    exit_code: int = 1

    def __init__(self, what: str, where: str | None = None) -> None:
        self.what = what
        self.where = where
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.what} ({self.where})" if self.where else self.what


class InputUnreadable(EtlError):
    """The input could not be read as what it should be (missing file, wrong sheet, not a table)."""

    exit_code = 2


class UsageError(EtlError):
    """A command line that asks for something impossible (a bad option value, options that exclude each
    other) but that click cannot check by itself: exit 2, like click's own usage errors."""

    exit_code = 2


class ValidationFailed(EtlError):
    """Data was read but breaks the rules (schema, mapping, geometry...)."""


class ConfigError(EtlError):
    """A mapping, schema or release definition is itself wrong."""


class ExtractError(EtlError):
    """A download failed after retries, or did not verify."""


class DicomError(EtlError):
    """A DICOM series cannot be converted; ``where`` names the series and file."""


class SegmentError(EtlError):
    """The segmentation stage could not run (model folder, device, input)."""
