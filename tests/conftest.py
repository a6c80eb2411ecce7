"""Shared fixtures: the public spreadsheets shipped in tests/data and an in-process CLI runner."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Unmodified copies of the public spreadsheets (source, licence, sha256: tests/data/README.md).
TEST_DATA = REPO / "tests" / "data"
V1_TABLE = TEST_DATA / "reference" / "clinical_and_imaging_info.xlsx"
DUKE_SOURCE = TEST_DATA / "sources" / "duke" / "Clinical_and_Other_Features.xlsx"
ISPY1_SOURCE = TEST_DATA / "sources" / "ispy1" / "I-SPY_1_All_Patient_Clinical_and_Outcome_Data.xlsx"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run `mamamia ARGS...` in-process; returns exit code, stdout and stderr."""
    from etl.cli import run

    def _run(*args: str | os.PathLike[str]) -> CliResult:
        capsys.readouterr()
        code = run([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return _run


@pytest.fixture
def mlcroissant():
    """mlcroissant, with absl's log handler writing to the real stderr.

    Why: absl (imported by mlcroissant) creates its handler on whatever ``sys.stderr`` is at that moment,
    under pytest a capture stream, and closes that stream when the handler is closed. synapseclient's
    import runs ``logging.config.dictConfig``, which closes every handler: a later test in the same worker
    that first imports synapseclient (rebuild, demo) closed pytest's own capture file and crashed the worker.
    """
    import mlcroissant  # a dev dependency: missing is an error, not a skip
    from absl import logging as absl_logging

    absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__  # absl never closes this one
    return mlcroissant


@pytest.fixture(scope="session")
def v1_path() -> Path:
    if not V1_TABLE.exists():
        pytest.fail(f"test data missing: {V1_TABLE} (see tests/data/README.md)")
    return V1_TABLE


@pytest.fixture(scope="session")
def v1_table(v1_path: Path):
    """The published v1 table as read by the package (read once per session)."""
    from etl.tables import read_table

    return read_table(v1_path)


from tests.browser import browser  # noqa: E402,F401  (the real-browser fixture, for every test folder)
