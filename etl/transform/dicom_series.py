"""Inventory of a case folder: which files are DICOM images, how they group into series and phases.

Inventory first, convert second (heudiconv's lesson): ``scan`` reads headers only (pixel data is
deferred and located by file offset), groups slices by series, splits multi-phase series by their
temporal tag, orders phases by acquisition time and checks each phase's geometry. ``read_phase`` then
reads the voxels of one phase straight into one array. Every problem is a ``DicomError`` whose ``where``
names the series and a file.

Geometry conventions (DICOM PS3.3 C.7.6.2): ImageOrientationPatient = row cosine (direction of increasing
column index) then column cosine; PixelSpacing = (row spacing, column spacing); positions in LPS mm. A
phase is the grid ``(c, r, k)`` with k increasing along normal = row cosine x column cosine, and
``Phase.affine`` maps it to LPS.
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom  # module level: the converter always needs it (reference headers, compressed data)
from pydicom.valuerep import DA, DT, TM

from etl.errors import ConfigError, DicomError, InputUnreadable

log = logging.getLogger("etl.transform.dicom_series")

# Transfer syntaxes whose pixel data can be read as raw little-endian bytes at an offset.
_RAW_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
# Tags that tell phases of one series apart, in order of trust.
TEMPORAL_TAGS = ("TemporalPositionIdentifier", "AcquisitionNumber", "TriggerTime", "AcquisitionTime")
# ImageType value 3 of scout/localizer images (ignored: they are never a phase of the dynamic series).
LOCALIZER_TYPES = {"LOCALIZER", "SCOUT", "LOCALISER"}
ORIENTATION_TOL = 1e-4  # cosine difference accepted as "same orientation"
SPACING_REL_TOL = 0.01  # slice gaps may differ from the median by 1 % (rounding in positions)


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


@dataclass
class Inventory:
    """What a case folder holds."""

    root: Path
    n_files: int = 0
    n_non_dicom: int = 0
    n_non_image: int = 0
    n_duplicates: int = 0  # files repeating an already seen SOPInstanceUID (ignored)
    n_localizers: int = 0  # scout/localizer images (ignored)
    n_no_geometry: int = 0  # images of series without any patient geometry (screen captures; ignored)
    series: dict[str, list[Slice]] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    ignored_series: list[str] = field(default_factory=list)
    ignored_studies: list[str] = field(default_factory=list)
    series_errors: dict[str, str] = field(default_factory=dict)  # ignored series that failed their checks
    filtered: dict[str, str] = field(default_factory=dict)  # series ignored by a series_filter rule -> rule name
    filter_fallback: list[str] = field(default_factory=list)  # rules that would have left no series (not applied)

    def describe(self) -> list[str]:
        """Human-readable lines for --dry-run."""
        lines = [
            f"{self.root}: {self.n_files} files, {sum(len(v) for v in self.series.values())} DICOM images in "
            f"{len(self.series)} series, {self.n_non_dicom} non-DICOM, {self.n_non_image} DICOM without pixels, "
            f"{self.n_duplicates} duplicate files, {self.n_localizers} localizer images, "
            f"{self.n_no_geometry} images without geometry, {len(self.filtered)} series ignored by the series filter"
        ]
        if self.filter_fallback:
            lines.append(f"  series filter not applied: rule(s) {', '.join(self.filter_fallback)} would leave no "
                         "series (converted unfiltered)")
        for study in self.ignored_studies:
            lines.append(f"  study {study}: ignored (a later study of the patient; only the first is converted)")
        for uid, slices in sorted(self.series.items(), key=lambda kv: (kv[1][0].series_number or 0, kv[0])):
            desc = str(slices[0].ds.get("SeriesDescription", "")).strip()
            flag = " (ignored: other geometry)" if uid in self.ignored_series else ""
            if slices[0].study_uid in self.ignored_studies:
                flag = " (ignored: later study)"
            if uid in self.series_errors:
                flag = f" (ignored: {self.series_errors[uid]})"
            if uid in self.filtered:
                flag = f" (ignored: series_filter rule {self.filtered[uid]})"
            lines.append(f"  series {uid} #{slices[0].series_number} '{desc}': {len(slices)} images{flag}")
        t0 = self.phases[0].time if self.phases and self.phases[0].time is not None else None
        for i, ph in enumerate(self.phases):
            sp = ", ".join(f"{x:.4g}" for x in ph.spacing)
            dt = f"+{ph.time - t0:.0f} s" if ph.time is not None and t0 is not None else "time ?"
            lines.append(f"  phase {i}: series {ph.series_uid}, {ph.shape[0]}x{ph.shape[1]}x{ph.shape[2]} "
                         f"voxels, spacing [{sp}] mm, {dt}")
        return lines


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


_ACQ_CLOCK_TAGS = (("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime"), ("SeriesDate", "SeriesTime"))


def _clock(ds: Any, pairs: tuple[tuple[str, str], ...] = _ACQ_CLOCK_TAGS) -> float | None:
    """Acquisition time as seconds since an epoch, from the first of the tags that has it (``ds.get``)."""
    import datetime as dt

    adt = ds.get("AcquisitionDateTime") if pairs is _ACQ_CLOCK_TAGS else None
    if adt:
        try:
            return DT(str(adt)).timestamp()  # type: ignore[union-attr]
        except (ValueError, TypeError, OverflowError):
            pass
    for date_tag, time_tag in pairs:
        t = ds.get(time_tag)
        if not t:
            continue
        try:
            tm = TM(str(t))
        except ValueError:
            continue
        secs = tm.hour * 3600 + tm.minute * 60 + tm.second + tm.microsecond / 1e6
        d = ds.get(date_tag)
        if d:
            try:
                day = DA(str(d))
                secs += (dt.date(day.year, day.month, day.day) - dt.date(1970, 1, 1)).days * 86400
            except ValueError:
                pass
        return secs
    return None


def _where(slice_: Slice | None = None, series: str | None = None, path: Path | None = None) -> str:
    uid = series or (slice_.series_uid if slice_ else "?")
    p = path or (slice_.path if slice_ else None)
    frame = f" frame {slice_.frame}" if slice_ is not None and slice_.frame is not None else ""
    return f"series {uid}, file {p}{frame}" if p else f"series {uid}"


def read_header(path: Path) -> Slice | None:
    """Header facts of one file; None for a DICOM file without image pixels. Raises for non-DICOM.

    Plain explicit-VR little-endian files (what scanners and TCIA deliver) go through a small element
    walker that reads only the tags the inventory needs (~20x faster than a full parse, which matters at
    120-200 files per phase); anything else goes through pydicom.
    """
    from pydicom.errors import InvalidDicomError

    fast = _fast_header(path)
    if fast is not None:
        return fast if fast is not _NO_PIXELS else None
    try:
        return _pydicom_header(path)
    except InvalidDicomError:
        if not _headless_dicom(path):
            raise
        return _pydicom_header(path, force=True)  # no preamble/'DICM' (old archives): a bare data set


def _headless_dicom(path: Path) -> bool:
    """A file without preamble that starts like a bare little-endian data set (group 0x0002 or 0x0008)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    if len(head) < 8 or head[1] != 0 or head[0] not in (0x02, 0x08) or head[3] != 0:
        return False
    vr = head[4:6]
    return (vr.isalpha() and vr.isupper()) or struct.unpack_from("<I", head, 4)[0] < 1 << 16  # explicit or implicit


def looks_like_dicom(path: Path) -> bool:
    """Cheap sniff: 'DICM' at offset 128, or a preamble-less bare data set."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM" or _headless_dicom(path)


def _pydicom_header(path: Path, force: bool = False) -> Slice | None:
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, defer_size=1024, force=force)
        if force and "SOPClassUID" not in ds and "PixelData" not in ds:
            raise InvalidDicomError("not a DICOM data set")
    except InvalidDicomError:
        raise
    except (EOFError, OSError, ValueError, KeyError, IndexError, TypeError, NotImplementedError) as exc:
        raise DicomError(f"unreadable DICOM file (truncated or corrupt): {exc}", str(path)) from exc
    if "PixelData" not in ds:
        return None
    raw = ds.get_item("PixelData", keep_deferred=True)
    meta = getattr(ds, "file_meta", None)
    tsyntax = str(meta.get("TransferSyntaxUID", "1.2.840.10008.1.2") if meta is not None else "1.2.840.10008.1.2")
    if force and (meta is None or "TransferSyntaxUID" not in meta):  # bare data set: the encoding pydicom found
        implicit, little = ds.original_encoding
        tsyntax = "1.2.840.10008.1.2.2" if not little else ("1.2.840.10008.1.2" if implicit else _EXPLICIT_LE)
    offset: int | None = None
    length = 0
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    bits = int(ds.get("BitsAllocated") or 16)
    expected = rows * cols * (bits // 8) * int(ds.get("SamplesPerPixel") or 1) * int(_float(ds.get("NumberOfFrames")) or 1)
    if getattr(raw, "value_tell", None) is not None and getattr(raw, "value", None) is None:
        length = int(raw.length)
        if length != 0xFFFFFFFF:
            size = os.path.getsize(path)
            if raw.value_tell + length > size:
                raise DicomError(
                    f"truncated file: pixel data needs {length} bytes at offset {raw.value_tell}, file has {size}",
                    str(path))
            if tsyntax in _RAW_LE and length >= expected and bits in (8, 16):
                offset = int(raw.value_tell)
    elif tsyntax in _RAW_LE:
        value = ds.get("PixelData")
        if value is not None and len(value) < expected:
            raise DicomError(f"truncated file: pixel data has {len(value)} bytes, needs {expected}", str(path))
    return _make_slice(path, ds.get, tsyntax, offset, length, ds)


def _make_slice(path: Path, get: Any, tsyntax: str, offset: int | None, length: int, ds: Any = None) -> Slice:
    """A Slice from a keyword getter (pydicom's ``ds.get`` or the fast walker's)."""
    series_uid = str(get("SeriesInstanceUID") or "")
    rows, cols = int(get("Rows") or 0), int(get("Columns") or 0)
    bits = int(get("BitsAllocated") or 16)
    frames = int(_float(get("NumberOfFrames")) or 1)
    vectors = {}
    geometry_error = None
    for tag, n in (("ImageOrientationPatient", 6), ("ImagePositionPatient", 3), ("PixelSpacing", 2)):
        value = get(tag)
        try:
            vec = [float(x) for x in value] if value is not None else []
        except (TypeError, ValueError):
            vec = []
        if len(vec) != n or not all(math.isfinite(x) for x in vec):
            geometry_error = geometry_error or f"missing or malformed {tag}"
            vec = [0.0] * n
        vectors[tag] = vec
    series_number = get("SeriesNumber")
    image_type = get("ImageType")
    if isinstance(image_type, str):
        image_type = image_type.split("\\")
    bits_stored = get("BitsStored")
    return Slice(
        path=path,
        study_uid=str(get("StudyInstanceUID") or ""),
        series_uid=series_uid,
        series_number=int(float(series_number)) if series_number not in (None, "") else None,
        rows=rows,
        cols=cols,
        iop=np.array(vectors["ImageOrientationPatient"], dtype=float),
        ipp=np.array(vectors["ImagePositionPatient"], dtype=float),
        pixel_spacing=(vectors["PixelSpacing"][0], vectors["PixelSpacing"][1]),
        slope=_float(get("RescaleSlope")) or 1.0,  # absent or 0 (invalid) means no scaling
        intercept=_float(get("RescaleIntercept")) or 0.0,
        clock=_clock(_Getter(get)),
        temporal={t: _float(get(t)) for t in TEMPORAL_TAGS[:3]},
        pixel_offset=offset,
        pixel_length=length,
        transfer_syntax=tsyntax,
        bits_allocated=bits,
        signed=int(get("PixelRepresentation") or 0) == 1,
        bits_stored=int(bits_stored) if bits_stored not in (None, "") else None,
        sop_uid=str(get("SOPInstanceUID") or ""),
        patient_id=str(get("PatientID") or ""),
        image_type=tuple(str(t).strip() for t in (image_type or ())),
        study_clock=_clock(_Getter(get), (("StudyDate", "StudyTime"),)),
        geometry_error=geometry_error,
        n_frames=frames,
        header=ds,
    )


class _Getter:
    """Adapts a keyword getter to the ``.get`` that ``_clock`` uses."""

    def __init__(self, get: Any) -> None:
        self.get = get


# ------------------------------------------------------------------ fast explicit-VR-LE header walker
_NO_PIXELS: Any = object()
_LONG_VR = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_WANTED = {  # tag -> (keyword, kind)
    0x0020000D: ("StudyInstanceUID", "str"), 0x0020000E: ("SeriesInstanceUID", "str"),
    0x00200011: ("SeriesNumber", "str"), 0x00280010: ("Rows", "us"), 0x00280011: ("Columns", "us"),
    0x00200037: ("ImageOrientationPatient", "multi"), 0x00200032: ("ImagePositionPatient", "multi"),
    0x00280030: ("PixelSpacing", "multi"), 0x00281053: ("RescaleSlope", "str"),
    0x00281052: ("RescaleIntercept", "str"), 0x00280100: ("BitsAllocated", "us"),
    0x00280103: ("PixelRepresentation", "us"), 0x00280002: ("SamplesPerPixel", "us"),
    0x00280008: ("NumberOfFrames", "str"), 0x00200100: ("TemporalPositionIdentifier", "str"),
    0x00200012: ("AcquisitionNumber", "str"), 0x00181060: ("TriggerTime", "str"),
    0x0008002A: ("AcquisitionDateTime", "str"), 0x00080022: ("AcquisitionDate", "str"),
    0x00080032: ("AcquisitionTime", "str"), 0x00080023: ("ContentDate", "str"), 0x00080033: ("ContentTime", "str"),
    0x00080021: ("SeriesDate", "str"), 0x00080031: ("SeriesTime", "str"),
    0x00080020: ("StudyDate", "str"), 0x00080030: ("StudyTime", "str"), 0x00080018: ("SOPInstanceUID", "str"),
    0x00100020: ("PatientID", "str"), 0x00080008: ("ImageType", "multi"), 0x00280101: ("BitsStored", "us"),
}
_HEAD = 16384


class _Fallback(Exception):
    """The walker met something it does not handle; pydicom reads the file instead."""


def _skip_undefined(buf: bytes, pos: int, end_tag: int) -> int:
    """Position after the delimiter ``end_tag`` of an undefined-length sequence or item (explicit VR LE)."""
    while True:
        if pos + 8 > len(buf):
            raise _Fallback
        group, elem = struct.unpack_from("<HH", buf, pos)
        tag = (group << 16) | elem
        if tag == end_tag:
            return pos + 8
        if group == 0xFFFE:  # item (or item delimiter inside a sequence)
            length = struct.unpack_from("<I", buf, pos + 4)[0]
            pos += 8
            if tag == 0xFFFEE000 and length == 0xFFFFFFFF:
                pos = _skip_undefined(buf, pos, 0xFFFEE00D)
            elif tag == 0xFFFEE000:
                pos += length
            continue
        vr = buf[pos + 4:pos + 6]
        if vr in _LONG_VR:
            length = struct.unpack_from("<I", buf, pos + 8)[0]
            pos += 12
        elif vr.isalpha() and vr.isupper():
            length = struct.unpack_from("<H", buf, pos + 6)[0]
            pos += 8
        else:
            raise _Fallback
        if length == 0xFFFFFFFF:
            pos = _skip_undefined(buf, pos, 0xFFFEE0DD)
        else:
            pos += length


def _fast_header(path: Path) -> Slice | None:
    """Walk an explicit-VR little-endian file up to PixelData; None = not handled here (use pydicom)."""
    try:
        with open(path, "rb") as fh:
            buf = fh.read(_HEAD)
            size = os.fstat(fh.fileno()).st_size
            if len(buf) < 132 or buf[128:132] != b"DICM":
                return None
            values: dict[str, Any] = {}
            pos = 132
            tsyntax = None
            while True:
                if pos + 12 > len(buf):
                    if len(buf) >= size:
                        return None  # no pixel data before the end: let pydicom decide what this is
                    buf += fh.read(max(_HEAD, len(buf)))
                    continue
                group, elem = struct.unpack_from("<HH", buf, pos)
                tag = (group << 16) | elem
                if group != 0x0002 and tsyntax != _EXPLICIT_LE:
                    return None
                vr = buf[pos + 4:pos + 6]
                if vr in _LONG_VR:
                    length = struct.unpack_from("<I", buf, pos + 8)[0]
                    start = pos + 12
                elif vr.isalpha() and vr.isupper():
                    length = struct.unpack_from("<H", buf, pos + 6)[0]
                    start = pos + 8
                else:
                    return None
                if tag == 0x7FE00010:
                    if length == 0xFFFFFFFF:
                        return None  # encapsulated (compressed) pixel data
                    break
                if length == 0xFFFFFFFF:
                    while True:
                        try:
                            pos = _skip_undefined(buf, start, 0xFFFEE0DD)
                            break
                        except _Fallback:
                            if len(buf) >= size:
                                return None
                            buf += fh.read(max(_HEAD, len(buf)))
                    continue
                end = start + length
                while end > len(buf) and len(buf) < size:
                    buf += fh.read(max(_HEAD, end - len(buf)))
                if end > len(buf):
                    return None  # truncated inside the header: pydicom gives the detailed error
                if tag == 0x00020010:
                    tsyntax = buf[start:end].rstrip(b"\x00 ").decode("ascii", "replace")
                elif tag in _WANTED:
                    name, kind = _WANTED[tag]
                    raw = buf[start:end]
                    if kind == "us":
                        values[name] = struct.unpack_from("<H", raw)[0] if len(raw) >= 2 else None
                    else:
                        text = raw.rstrip(b"\x00 ").decode("latin-1").strip()
                        if kind == "multi":
                            values[name] = [t.strip() for t in text.split("\\")] if text else None
                        else:
                            values[name] = text or None
                pos = end
    except (OSError, struct.error, _Fallback):
        return None
    pixel_start = pos + 12
    rows, cols = int(values.get("Rows") or 0), int(values.get("Columns") or 0)
    bits = int(values.get("BitsAllocated") or 16)
    expected = (rows * cols * (bits // 8) * int(values.get("SamplesPerPixel") or 1) *
                int(_float(values.get("NumberOfFrames")) or 1))
    if pixel_start + length > size or length < expected:
        raise DicomError(f"truncated file: pixel data needs {max(length, expected)} bytes at offset {pixel_start}, "
                         f"file has {size}", str(path))
    offset = pixel_start if bits in (8, 16) and int(values.get("SamplesPerPixel") or 1) == 1 else None
    return _make_slice(path, values.get, tsyntax or _EXPLICIT_LE, offset, length)


def _group(groups: list[Any], seq: str, key: str) -> Any:
    """``key`` of the first item of functional group ``seq`` in the first of ``groups`` that has it."""
    for grp in groups:
        if grp is not None and seq in grp and grp[seq].value and key in grp[seq].value[0]:
            return grp[seq].value[0].get(key)
    return None


def expand_frames(s: Slice) -> list[Slice]:
    """One Slice per frame of a multi-frame file (Enhanced MR: geometry, rescale and time per frame from the
    per-frame and shared functional groups, else the top-level tags)."""
    from dataclasses import replace

    ds = pydicom.dcmread(s.path, stop_before_pixels=True, force=True)
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    if per and len(per) != s.n_frames:
        raise DicomError(f"{len(per)} per-frame functional groups for {s.n_frames} frames", _where(s))
    frame_bytes = s.rows * s.cols * (s.bits_allocated // 8)
    out = []
    for i in range(s.n_frames):
        groups = [per[i] if per else None, shared]

        def vec(seq: str, key: str, n: int, frame_groups: list[Any] = groups) -> list[float] | None:
            value = _group(frame_groups, seq, key)
            if value is None:
                value = ds.get(key)
            try:
                v = [float(x) for x in value] if value is not None else []
            except (TypeError, ValueError):
                return None
            return v if len(v) == n else None

        iop = vec("PlaneOrientationSequence", "ImageOrientationPatient", 6)
        ipp = vec("PlanePositionSequence", "ImagePositionPatient", 3)
        spacing = vec("PixelMeasuresSequence", "PixelSpacing", 2)
        missing = [k for k, v in (("ImageOrientationPatient", iop), ("ImagePositionPatient", ipp),
                                  ("PixelSpacing", spacing)) if v is None]
        slope = _float(_group(groups, "PixelValueTransformationSequence", "RescaleSlope"))
        inter = _float(_group(groups, "PixelValueTransformationSequence", "RescaleIntercept"))
        content = _group(groups, "FrameContentSequence", "FrameAcquisitionDateTime")
        clock = s.clock
        if content:
            try:
                clock = DT(str(content)).timestamp()  # type: ignore[union-attr]
            except (ValueError, TypeError, OverflowError):
                pass
        temporal = dict(s.temporal)
        tpi = _float(_group(groups, "FrameContentSequence", "TemporalPositionIndex"))
        if tpi is not None:
            temporal["TemporalPositionIdentifier"] = tpi
        trig = _float(_group(groups, "CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"))
        if trig is not None:
            temporal["TriggerTime"] = trig
        out.append(replace(
            s, iop=np.array(iop or [0.0] * 6), ipp=np.array(ipp or [0.0] * 3),
            pixel_spacing=tuple(spacing) if spacing else (0.0, 0.0),  # type: ignore[arg-type]
            slope=slope or s.slope, intercept=inter if inter is not None else s.intercept, clock=clock,
            temporal=temporal, frame=i, n_frames=s.n_frames,
            pixel_offset=None if s.pixel_offset is None else s.pixel_offset + i * frame_bytes,
            sop_uid=f"{s.sop_uid}#{i}" if s.sop_uid else "",
            geometry_error=f"frame {i}: missing {missing[0]}" if missing else None, header=ds))
    return out


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith("."):  # temp files of an interrupted copy, macOS metadata
                continue
            out.append(Path(dirpath) / name)
    return out


def _split_phases(uid: str, slices: list[Slice]) -> list[list[Slice]]:
    """Split one series into phases when slice positions repeat, by the first temporal tag that does it.

    A position seen ``m`` times means ``m`` phases. A tag splits the series when either its values form
    exactly ``m`` groups of distinct positions (TemporalPositionIdentifier, AcquisitionNumber, ...), or, for
    values that also vary slice by slice (acquisition/trigger times of 2D-like acquisitions), when every
    position has ``m`` strictly increasing values whose ranks give ``m`` non-overlapping time windows.
    """
    iop0 = slices[0].iop
    for s in slices[1:]:
        if np.max(np.abs(s.iop - iop0)) > ORIENTATION_TOL:
            raise DicomError("mixed slice orientations in one series", _where(s))
    normal = slices[0].normal
    pos = [round(float(s.ipp @ normal), 3) for s in slices]
    at: dict[float, list[int]] = defaultdict(list)
    for i, p in enumerate(pos):
        at[p].append(i)
    m = max(len(v) for v in at.values())
    if m == 1:
        return [slices]
    for tag in TEMPORAL_TAGS:
        keys = [s.clock for s in slices] if tag == "AcquisitionTime" else [s.temporal.get(tag) for s in slices]
        if any(k is None for k in keys):
            continue
        groups: dict[float, list[int]] = defaultdict(list)
        for i, k in enumerate(keys):
            groups[k].append(i)  # type: ignore[index]
        if len(groups) == m and all(len({pos[i] for i in g}) == len(g) for g in groups.values()):
            log.debug("series %s: %d phases by %s", uid, m, tag)
            return [[slices[i] for i in groups[k]] for k in sorted(groups)]  # type: ignore[type-var]
        ranked = _rank_split(at, keys, m)  # type: ignore[arg-type]
        if ranked is not None:
            log.debug("series %s: %d phases by %s ranks", uid, m, tag)
            return [[slices[i] for i in g] for g in ranked]
    # No tag separates them: name the problem and a file.
    short = [(p, idx) for p, idx in at.items() if len(idx) != m]
    if short:
        p, idx = short[0]
        raise DicomError(f"slice position {p} mm has {len(idx)} images where other positions have {m} "
                         "(missing or extra slice in a multi-phase series)", _where(slices[idx[0]]))
    p, idx = next((p, idx) for p, idx in at.items() if len(idx) > 1)
    raise DicomError(
        f"duplicate slice position {p} mm that no temporal tag ({', '.join(TEMPORAL_TAGS)}) separates; "
        f"also in {slices[idx[0]].path.name}", _where(slices[idx[1]]))


def _rank_split(at: dict[float, list[int]], keys: list[float], m: int) -> list[list[int]] | None:
    """Phase i = the i-th time each position was acquired, if that gives ``m`` disjoint time windows."""
    if any(len(idx) != m for idx in at.values()):
        return None
    groups: list[list[int]] = [[] for _ in range(m)]
    for idx in at.values():
        ordered = sorted(idx, key=lambda i: keys[i])
        if any(keys[a] == keys[b] for a, b in zip(ordered, ordered[1:])):
            return None
        for rank, i in enumerate(ordered):
            groups[rank].append(i)
    windows = [(min(keys[i] for i in g), max(keys[i] for i in g)) for g in groups]
    if any(hi >= lo for (_, hi), (lo, _) in zip(windows, windows[1:])):
        return None
    return groups


def phase_geometry(uid: str, slices: list[Slice]) -> tuple[list[Slice], np.ndarray]:
    """Sort a phase's slices along the normal, check the stack, return (sorted slices, LPS affine)."""
    first = slices[0]
    for s in slices[1:]:
        if np.max(np.abs(s.iop - first.iop)) > ORIENTATION_TOL:
            raise DicomError("mixed slice orientations in one phase", _where(s))
        if (s.rows, s.cols) != (first.rows, first.cols):
            raise DicomError(f"image size {s.rows}x{s.cols} differs from {first.rows}x{first.cols}", _where(s))
        if not np.allclose(s.pixel_spacing, first.pixel_spacing, rtol=1e-4, atol=1e-6):
            raise DicomError(f"pixel spacing {s.pixel_spacing} differs from {first.pixel_spacing}", _where(s))
    row, col = first.iop[:3], first.iop[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise DicomError("ImageOrientationPatient is not two orthonormal cosines", _where(first))
    normal = np.cross(row, col)
    ordered = sorted(slices, key=lambda s: float(s.ipp @ normal))
    proj = np.array([float(s.ipp @ normal) for s in ordered])
    n = len(ordered)
    if n > 1:
        gaps = np.diff(proj)
        tiny = np.flatnonzero(gaps < 1e-3)
        if tiny.size:
            i = int(tiny[0])
            raise DicomError(f"duplicate slice position {proj[i]:.4f} mm (also in {ordered[i].path.name})",
                             _where(ordered[i + 1]))
        g = float(np.median(gaps))
        bad = np.flatnonzero(np.abs(gaps - g) > max(SPACING_REL_TOL * g, 1e-3))
        if bad.size:
            i = int(bad[0])
            ratio = gaps[i] / g
            if abs(ratio - round(ratio)) < 0.1 and round(ratio) >= 2:
                what = (f"missing slice: gap of {gaps[i]:.4f} mm between positions {proj[i]:.4f} and "
                        f"{proj[i + 1]:.4f} where slices are {g:.4f} mm apart ({int(round(ratio)) - 1} missing)")
            else:
                what = f"uneven slice spacing: gap of {gaps[i]:.4f} mm where slices are {g:.4f} mm apart"
            raise DicomError(what, _where(ordered[i + 1]))
        step = (ordered[-1].ipp - ordered[0].ipp) / (n - 1)
        shear = np.linalg.norm(step - normal * (proj[-1] - proj[0]) / (n - 1))
        if shear > 1e-3 * max(1.0, g):
            raise DicomError(f"slices are not stacked along the slice normal (shear {shear:.4f} mm per slice; "
                             "gantry tilt or inconsistent positions)", _where(ordered[-1]))
    else:
        thick = _float(first.ds.get("SpacingBetweenSlices")) or _float(first.ds.get("SliceThickness")) or 1.0
        step = normal * thick
    dr, dc = first.pixel_spacing
    affine = np.eye(4)
    affine[:3, 0] = row * dc
    affine[:3, 1] = col * dr
    affine[:3, 2] = step
    affine[:3, 3] = ordered[0].ipp
    return ordered, affine


# ------------------------------------------------------------------ series filter (schemas/imaging_headers.yaml)
_RULE_KEYS = {"name", "tag", "match", "any_of", "unless", "requires_original"}


@dataclass(frozen=True)
class SeriesRule:
    """One ``series_filter`` rule: ignore a series whose ``tag`` matches (see the YAML for the semantics)."""

    name: str
    tag: str
    match: re.Pattern[str] | None = None
    any_of: frozenset[str] = frozenset()
    unless: re.Pattern[str] | None = None
    requires_original: bool = False

    def fires(self, first: Slice) -> bool:
        values = _tag_values(first, self.tag)
        text = "\\".join(values)
        if self.unless is not None and self.unless.search(text):
            return False
        if self.match is not None:
            return bool(self.match.search(text))
        return any(v.upper() in self.any_of for v in values)


def _tag_values(s: Slice, tag: str) -> list[str]:
    """A tag's values as stripped strings (ImageType from the inventory's header facts, others from the header)."""
    if tag == "ImageType":
        return [t for t in s.image_type if t]
    value = s.ds.get(tag)
    if value is None:
        return []
    items = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    return [str(v).strip() for v in items if v is not None and str(v).strip()]


def series_filter_rules() -> list[SeriesRule]:
    """The ``series_filter`` rules of schemas/imaging_headers.yaml, checked and compiled."""
    from etl.resources import data_path
    from etl.yamlfile import load_yaml_mapping

    where = "schemas/imaging_headers.yaml: series_filter"
    section = load_yaml_mapping(data_path("schemas/imaging_headers.yaml"), "imaging header rules").get("series_filter")
    if section is None:
        return []
    if not isinstance(section, dict) or not isinstance(section.get("rules") or [], list):
        raise ConfigError("series_filter must be a mapping with a list of rules", where)
    out = []
    for i, spec in enumerate(section.get("rules") or []):
        if not isinstance(spec, dict) or not spec.get("name") or not spec.get("tag"):
            raise ConfigError(f"rule {i + 1}: needs name and tag", where)
        unknown = set(spec) - _RULE_KEYS
        if unknown:
            raise ConfigError(f"rule {spec['name']}: unknown key(s) {', '.join(sorted(unknown))}", where)
        if ("match" in spec) == ("any_of" in spec):
            raise ConfigError(f"rule {spec['name']}: needs exactly one of match, any_of", where)
        try:
            match = re.compile(str(spec["match"])) if "match" in spec else None
            unless = re.compile(str(spec["unless"])) if spec.get("unless") else None
        except re.error as exc:
            raise ConfigError(f"rule {spec['name']}: bad regex: {exc}", where) from exc
        out.append(SeriesRule(name=str(spec["name"]), tag=str(spec["tag"]), match=match,
                              any_of=frozenset(str(v).upper() for v in spec.get("any_of") or ()), unless=unless,
                              requires_original=bool(spec.get("requires_original"))))
    return out


def filter_series(by_series: dict[str, list[Slice]], rules: list[SeriesRule]) -> dict[str, str]:
    """Series (uid -> rule name) that the rules ignore. Only series with geometry are judged; a
    ``requires_original`` rule fires only beside an ORIGINAL series of the same study and geometry that no
    rule ignores."""
    firsts = {}
    for uid, slices in by_series.items():
        good = [s for s in slices if not s.geometry_error]
        if good:
            firsts[uid] = good[0]
    # an ORIGINAL series that no rule would ignore (a requires_original rule judged without its condition)
    originals = {(s.study_uid, s.signature) for s in firsts.values()
                 if s.image_type[:1] and s.image_type[0].upper() == "ORIGINAL" and not any(r.fires(s) for r in rules)}
    hits: dict[str, str] = {}
    for uid, s in firsts.items():
        for r in rules:  # YAML order: the first rule that fires names the reason
            if r.requires_original and (s.study_uid, s.signature) not in originals:
                continue
            if r.fires(s):
                hits[uid] = r.name
                break
    return hits


def scan(root: str | Path, files: Iterable[Path] | None = None, series_filter: bool = True) -> Inventory:
    """Inventory a case folder (or explicit files): series, phases in acquisition order, geometry checked.

    Ignored, and counted: non-DICOM files, DICOM without pixels (DICOMDIR, reports), repeated SOP
    instances (copied files), localizer/scout images, series without patient geometry, later studies of
    the patient (the first study with a dynamic series is converted), series of another geometry, and
    (``series_filter``, default on) series that a ``series_filter`` rule of schemas/imaging_headers.yaml
    marks as not DCE (subtractions, maps, T2, diffusion, derived copies...; never checked, never an error;
    when the rules would leave no series, none is filtered and a warning names the rules). A series that
    fails its checks is an error unless it clearly is not part of the dynamic acquisition (another geometry
    and fewer images than one phase).
    """
    from pydicom.errors import InvalidDicomError

    root = Path(root)
    if not root.exists():
        raise InputUnreadable("no such file or folder", str(root))
    inv = Inventory(root=root)
    by_series: dict[str, list[Slice]] = defaultdict(list)
    seen_sop: set[str] = set()
    for path in (list(files) if files is not None else _files(root)):
        inv.n_files += 1
        try:
            s = read_header(path)
        except InvalidDicomError:
            inv.n_non_dicom += 1
            continue
        if s is None:
            inv.n_non_image += 1
            continue
        if s.sop_uid:
            if s.sop_uid in seen_sop:
                inv.n_duplicates += 1
                log.debug("%s: repeats SOP instance %s; ignored", path, s.sop_uid)
                continue
            seen_sop.add(s.sop_uid)
        if s.is_localizer:
            inv.n_localizers += 1
            continue
        by_series[s.series_uid].extend(expand_frames(s) if s.n_frames > 1 else [s])
    inv.series = dict(by_series)
    if not by_series:
        raise DicomError(f"no DICOM images found ({inv.n_files} files, {inv.n_non_dicom} not DICOM, "
                         f"{inv.n_localizers} localizers)", str(root))

    if series_filter:
        hits = filter_series(by_series, series_filter_rules())
        with_geometry = {u for u, sl in by_series.items() if any(not s.geometry_error for s in sl)}
        if hits and not with_geometry - set(hits):
            inv.filter_fallback = sorted(set(hits.values()))
            log.warning("%s: series filter rule(s) %s would leave no series; converting unfiltered", root,
                        ", ".join(inv.filter_fallback))
        else:
            inv.filtered = hits
            for uid, rule in hits.items():
                s0 = by_series[uid][0]
                log.info("%s: series %s #%s '%s' (%d images) ignored by series_filter rule %s", root, uid,
                         s0.series_number, str(s0.ds.get("SeriesDescription", "")).strip(), len(by_series[uid]),
                         rule)

    phases: list[Phase] = []
    errors: dict[str, DicomError] = {}
    for uid, slices in by_series.items():
        if uid in inv.filtered:
            continue
        nogeo = [s for s in slices if s.geometry_error]
        if nogeo and len(nogeo) == len(slices):
            inv.n_no_geometry += len(slices)
            inv.series_errors[uid] = f"no patient geometry: {nogeo[0].geometry_error}"
            continue
        try:
            if nogeo:
                raise DicomError(nogeo[0].geometry_error or "missing geometry", _where(nogeo[0]))
            for group in _split_phases(uid, slices):
                ordered, affine = phase_geometry(uid, group)
                times = [s.clock for s in ordered if s.clock is not None]
                trig = ordered[0].temporal.get("TriggerTime")
                phases.append(Phase(series_uid=uid, slices=ordered, affine=affine,
                                    time=min(times) if times else None, temporal_key=("TriggerTime", trig)))
        except DicomError as exc:
            errors[uid] = exc
            phases = [ph for ph in phases if ph.series_uid != uid]
    if not phases:
        raise next(iter(errors.values())) if errors else DicomError("no series with patient geometry", str(root))
    # Phases of one series with one clock (e.g. Philips keeps AcquisitionTime): use the trigger time.
    by_uid: dict[str, list[Phase]] = defaultdict(list)
    for ph in phases:
        by_uid[ph.series_uid].append(ph)
    for group in by_uid.values():
        if len(group) > 1 and len({ph.time for ph in group}) < len(group):
            for ph in group:
                trig = ph.temporal_key[1] if ph.temporal_key else None
                ph.time = (ph.time or 0.0) + (trig or 0.0) / 1000.0

    # One study: the first (by study date/time) that has a multi-phase set, else the first.
    sets: dict[tuple, list[Phase]] = defaultdict(list)
    for ph in phases:
        s0 = ph.slices[0]
        sets[(s0.study_uid, s0.signature)].append(ph)
    study_time: dict[str, float] = {}
    for ph in phases:
        s0 = ph.slices[0]
        t = s0.study_clock if s0.study_clock is not None else (ph.time if ph.time is not None else math.inf)
        study_time[s0.study_uid] = min(study_time.get(s0.study_uid, math.inf), t)
    studies = sorted(study_time, key=lambda u: (study_time[u], u))
    dynamic = [u for u in studies if any(len(g) > 1 for (su, _), g in sets.items() if su == u)]
    study = (dynamic or studies)[0]
    inv.ignored_studies = [u for u in studies if u != study]
    if inv.ignored_studies:
        log.warning("%s: %d studies; converting %s, ignoring %s", root, len(studies), study,
                    ", ".join(inv.ignored_studies))
    # The dynamic series: the largest set of phases of that study sharing one geometry.
    best = max((g for (su, _), g in sets.items() if su == study),
               key=lambda g: (len(g), sum(len(p.slices) for p in g)))
    sig = best[0].slices[0].signature
    per_phase = len(best[0].slices)
    for uid, exc in errors.items():
        slices = by_series[uid]
        if slices[0].study_uid == study and (any(s.signature == sig for s in slices) or len(slices) >= per_phase):
            raise exc  # could be (part of) the dynamic acquisition: never convert around it
        inv.series_errors[uid] = exc.what
        log.warning("%s: series %s ignored: %s", root, uid, exc.message)
    in_best = {id(ph) for ph in best}
    inv.ignored_series = sorted(({ph.series_uid for ph in phases if id(ph) not in in_best} |
                                 {u for u in by_series if by_series[u][0].study_uid != study} |
                                 set(inv.series_errors)) - {ph.series_uid for ph in best})
    counts = {len(ph.slices) for ph in best}
    if len(counts) > 1:
        most = max(counts, key=lambda c: sum(len(p.slices) == c for p in best))
        odd = next(ph for ph in best if len(ph.slices) != most)
        raise DicomError(f"phase has {len(odd.slices)} slices where the other phases have {most} "
                         "(missing slice at an end of the stack?)", _where(odd.slices[-1]))
    if any(ph.time is None for ph in best) and len(best) > 1:
        log.warning("%s: phases without acquisition time; ordered by series number and temporal tag", root)
    inv.phases = sorted(best, key=lambda ph: (ph.time if ph.time is not None else math.inf,
                                              ph.slices[0].series_number or 0, ph.series_uid,
                                              ph.slices[0].temporal.get("TemporalPositionIdentifier") or 0))
    return inv


def stored_dtype(s: Slice) -> np.dtype:
    bits, signed = s.bits_allocated, s.signed
    if bits == 8:
        return np.dtype(np.int8 if signed else np.uint8)
    if bits == 16:
        return np.dtype("<i2" if signed else "<u2")
    if bits == 32:
        return np.dtype("<i4" if signed else "<u4")
    raise DicomError(f"BitsAllocated {bits} not supported", str(s.path))


def read_stored(phase: Phase) -> np.ndarray:
    """Stored pixel values of a phase as (k, r, c), read straight from the files when uncompressed."""
    first = phase.slices[0]
    dtype = stored_dtype(first)
    out = np.empty((len(phase.slices), first.rows, first.cols), dtype=dtype)
    nbytes = first.rows * first.cols * dtype.itemsize
    for k, s in enumerate(phase.slices):
        if s.pixel_offset is not None:
            with open(s.path, "rb", buffering=0) as fh:
                fh.seek(s.pixel_offset)
                got = fh.readinto(memoryview(out[k]).cast("B"))
            if got != nbytes:
                raise DicomError(f"truncated file: read {got} of {nbytes} pixel bytes", _where(s))
            _sign_extend(out[k], s)
        else:
            out[k] = _decode(s)  # pydicom applies BitsStored itself
    return out


def _sign_extend(plane: np.ndarray, s: Slice) -> None:
    """Signed values stored in fewer bits than allocated (e.g. 12 of 16): the raw bytes need sign extension."""
    stored = s.bits_stored
    if s.signed and stored and stored < 8 * plane.dtype.itemsize:
        shift = 8 * plane.dtype.itemsize - stored
        plane <<= shift
        plane >>= shift  # arithmetic shift on a signed dtype


def _decode(s: Slice) -> np.ndarray:
    """Decode one slice through pydicom's pixel handlers (compressed, big endian, odd layouts)."""
    from pydicom.errors import InvalidDicomError

    try:
        if s.frame is not None:
            from pydicom.pixels import pixel_array

            arr = pixel_array(s.path, index=s.frame)
        else:
            ds = pydicom.dcmread(s.path, force=True)  # the inventory knows it is DICOM (maybe preamble-less)
            arr = ds.pixel_array
    except (EOFError, OSError, ValueError, RuntimeError, NotImplementedError, AttributeError, TypeError,
            KeyError, IndexError, InvalidDicomError) as exc:
        raise DicomError(f"cannot decode pixel data ({s.transfer_syntax}): {exc}", _where(s)) from exc
    if arr.shape != (s.rows, s.cols):
        raise DicomError(f"pixel data shape {arr.shape} is not {s.rows}x{s.cols}", _where(s))
    return arr


def read_phase(phase: Phase) -> np.ndarray:
    """Real-world values of a phase as (k, r, c): integer dtype kept when the rescale allows, else float32."""
    stored = read_stored(phase)
    slopes = np.array([s.slope for s in phase.slices])
    inters = np.array([s.intercept for s in phase.slices])
    if np.all(slopes == 1.0) and np.all(inters == 0.0):
        return stored
    integral = np.all(slopes == np.round(slopes)) and np.all(inters == np.round(inters))
    if integral and stored.size:
        lo, hi = float(stored.min()), float(stored.max())
        ends = [x * a + b for x in (lo, hi) for a in slopes for b in inters]
        # Smallest integer type holding every value (the stored type first: unchanged files stay uint16).
        for dt in (stored.dtype, np.dtype("<u2"), np.dtype("<i2"), np.dtype("<i4")):
            info = np.iinfo(dt)
            if info.min <= min(ends) and max(ends) <= info.max:
                wide = stored.astype(np.int64 if dt.itemsize >= 4 else np.int32)
                if len(set(slopes)) == 1 and len(set(inters)) == 1:
                    wide *= int(slopes[0])
                    wide += int(inters[0])
                else:
                    wide *= slopes.astype(np.int64)[:, None, None].astype(wide.dtype)
                    wide += inters.astype(np.int64)[:, None, None].astype(wide.dtype)
                return wide.astype(dt)
    out = stored.astype(np.float32)
    for k in range(out.shape[0]):
        out[k] = out[k] * np.float32(slopes[k]) + np.float32(inters[k])
    return out
