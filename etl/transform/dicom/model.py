"""What the inventory knows about an image and a phase: header facts only, pixels located but not read.

Geometry conventions (DICOM PS3.3 C.7.6.2): ImageOrientationPatient = row cosine (direction of increasing
column index) then column cosine; PixelSpacing = (row spacing, column spacing); positions in LPS mm. A
phase is the grid ``(c, r, k)`` with k increasing along normal = row cosine x column cosine, and
``Phase.affine`` maps it to LPS.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom  # module level: the converter always needs it (reference headers, compressed data)

from etl.transform.dicom.tags import tag_values

# Tags that tell phases of one series apart, in order of trust.
TEMPORAL_TAGS = ("TemporalPositionIdentifier", "AcquisitionNumber", "TriggerTime", "AcquisitionTime")
# ImageType value 3 of scout/localizer images (ignored: they are never a phase of the dynamic series).
LOCALIZER_TYPES = {"LOCALIZER", "SCOUT", "LOCALISER"}


def as_float(value: Any) -> float | None:
    """A header value as a float, None when absent or not a number (headers hold text of every kind)."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass
class Slice:
    """One image file's header facts (pixel data not read)."""

    path: Path
    study_uid: str
    series_uid: str
    series_number: int | None
    rows: int
    cols: int
    iop: np.ndarray  # 6 cosines
    ipp: np.ndarray  # 3 mm
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing)
    slope: float
    intercept: float
    clock: float | None  # acquisition time of day/epoch in seconds, if the header has one
    temporal: dict[str, float | None]
    pixel_offset: int | None  # file offset of raw pixel bytes, None when encapsulated or deferred read impossible
    pixel_length: int
    transfer_syntax: str
    bits_allocated: int = 16
    signed: bool = False
    bits_stored: int | None = None
    sop_uid: str = ""
    patient_id: str = ""
    image_type: tuple[str, ...] = ()
    study_clock: float | None = None  # StudyDate/StudyTime in seconds (orders the studies of a patient folder)
    geometry_error: str | None = None  # why the slice has no usable geometry (missing IOP/IPP/PixelSpacing)
    n_frames: int = 1  # frames in the file (Enhanced MR multi-frame); expanded into one Slice per frame
    frame: int | None = None  # this Slice's frame index in a multi-frame file
    header: Any = None  # pydicom Dataset (pixel data not loaded), read on first use of ``ds``

    @property
    def ds(self) -> Any:
        """The full header as a pydicom Dataset (parsed lazily: only reference slices need it)."""
        if self.header is None:
            self.header = pydicom.dcmread(self.path, stop_before_pixels=True)
        return self.header

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.iop[:3], self.iop[3:])

    @property
    def is_localizer(self) -> bool:
        return any(t.upper() in LOCALIZER_TYPES for t in self.image_type[2:])

    @property
    def signature(self) -> tuple:
        """What the phases of one dynamic acquisition share: orientation, matrix, pixel spacing."""
        return (tuple(np.round(self.iop, 3)), self.rows, self.cols, tuple(np.round(self.pixel_spacing, 4)))

    @functools.cached_property
    def description(self) -> str:
        """SeriesDescription, clean (see ``tags.clean_text``; "" when absent)."""
        return " ".join(tag_values(self.ds, "SeriesDescription"))


@dataclass
class Phase:
    """One 3D volume of the dynamic series, slices sorted along the normal."""

    series_uid: str
    slices: list[Slice]
    affine: np.ndarray  # 4x4, (c, r, k) -> LPS mm
    time: float | None  # seconds (clock) of the phase's first slice
    temporal_key: tuple[str, float | None] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(columns, rows, slices)."""
        s = self.slices[0]
        return (s.cols, s.rows, len(self.slices))

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(np.linalg.norm(self.affine[:3, i])) for i in range(3))  # type: ignore[return-value]

    @property
    def reference(self) -> Any:
        """Header of the first slice (what the imaging variables are read from)."""
        return self.slices[0].ds


@dataclass(frozen=True)
class Decision:
    """Why a series is (or is not) part of the dynamic: ``rule`` is a stable name, ``detail`` for people."""

    kept: bool
    rule: str
    detail: str = ""


def where(slice_: Slice | None = None, series: str | None = None, path: Path | None = None) -> str:
    """The ``where`` of a DicomError: series UID, file and frame, so a curator can open the file."""
    uid = series or (slice_.series_uid if slice_ else "?")
    p = path or (slice_.path if slice_ else None)
    frame = f" frame {slice_.frame}" if slice_ is not None and slice_.frame is not None else ""
    return f"series {uid}, file {p}{frame}" if p else f"series {uid}"
