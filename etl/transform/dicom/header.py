"""A file's header facts (a ``Slice``): what the inventory needs to group, order and read an image.

Plain explicit-VR little-endian files go through the walker (``walker.py``); anything else through pydicom.
A truncated or corrupt file is a DicomError naming it, never a traceback. Enhanced MR multi-frame files are
expanded into one Slice per frame from their functional groups (``tags.group_value``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.valuerep import DA, DT, TM

from etl.errors import DicomError
from etl.transform.dicom.model import TEMPORAL_TAGS, Slice, as_float, where
from etl.transform.dicom.tags import clean_text, group_value, identifier
from etl.transform.dicom.walker import EXPLICIT_LE, walk

# Transfer syntaxes whose pixel data can be read as raw little-endian bytes at an offset.
_RAW_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


_ACQ_CLOCK_TAGS = (("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime"), ("SeriesDate", "SeriesTime"))


def _clock(ds: Any, pairs: tuple[tuple[str, str], ...] = _ACQ_CLOCK_TAGS) -> float | None:
    """Acquisition time as seconds since an epoch, from the first of the tags that has it (``ds.get``)."""
    adt = ds.get("AcquisitionDateTime") if pairs is _ACQ_CLOCK_TAGS else None
    texts = tuple((_text(ds.get(date_tag)), _text(ds.get(time_tag))) for date_tag, time_tag in pairs)
    return _parse_clock(_text(adt), texts)


def _text(value: Any) -> str:
    return str(value) if value else ""


@functools.lru_cache(maxsize=4096)
def _parse_clock(adt: str, pairs: tuple[tuple[str, str], ...]) -> float | None:
    """``_clock`` on the tag texts; cached because every slice of a phase (and of a study, for the study
    clock) carries the same few date/time strings, and parsing them was a tenth of the header read."""
    if adt:
        try:
            return DT(adt).timestamp()
        except (ValueError, TypeError, OverflowError):
            pass
    for d, t in pairs:
        if not t:
            continue
        try:
            tm = TM(t)
        except ValueError:
            continue
        secs = tm.hour * 3600 + tm.minute * 60 + tm.second + tm.microsecond / 1e6
        if d:
            try:
                day = DA(d)
                secs += (dt.date(day.year, day.month, day.day) - dt.date(1970, 1, 1)).days * 86400
            except ValueError:
                pass
        return secs
    return None


def read_header(path: Path) -> Slice | None:
    """Header facts of one file; None for a DICOM file without image pixels. Raises for non-DICOM.

    Plain explicit-VR little-endian files (what scanners and TCIA deliver) go through a small element
    walker that reads only the tags the inventory needs (~20x faster than a full parse, which matters at
    120-200 files per phase); anything else goes through pydicom.
    """
    from pydicom.errors import InvalidDicomError

    fast = _fast_header(path)
    if fast is not None:
        return fast
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
    """pydicom's reading of a file; a truncated or corrupt file is a DicomError naming it, never a traceback."""
    from pydicom.errors import BytesLengthException, InvalidDicomError

    try:
        return _pydicom_slice(path, force)
    except (InvalidDicomError, DicomError):
        raise
    except (EOFError, OSError, ValueError, KeyError, IndexError, TypeError, NotImplementedError, AttributeError,
            OverflowError, struct.error, BytesLengthException) as exc:  # what pydicom raises on cut or bad bytes
        raise DicomError(f"unreadable DICOM file (truncated or corrupt): {type(exc).__name__}: {exc}",
                         str(path)) from exc


# SOP classes whose files must carry pixels: such a file without PixelData was cut short, not a report.
_IMAGE_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.4.4"}


def _pydicom_slice(path: Path, force: bool) -> Slice | None:
    from pydicom.errors import InvalidDicomError

    ds = pydicom.dcmread(path, defer_size=1024, force=force)
    if force and "SOPClassUID" not in ds and "PixelData" not in ds:
        raise InvalidDicomError("not a DICOM data set")
    if "PixelData" not in ds:
        meta = getattr(ds, "file_meta", None)
        classes = {str(ds.get("SOPClassUID") or ""), str(meta.get("MediaStorageSOPClassUID", "") if meta else "")}
        sop = next(iter(sorted(classes & _IMAGE_SOP_CLASSES)), "")
        if "Rows" in ds or "Columns" in ds or sop or len(ds) == 0:  # an empty data set was cut in its meta
            raise DicomError(f"truncated file: an image (SOP class {sop or '?'}) without pixel data, "
                             f"{os.path.getsize(path)} bytes", str(path))
        return None  # DICOMDIR, reports, presentation states: no pixels by design
    raw: Any = ds.get_item("PixelData", keep_deferred=True)  # RawDataElement when deferred (value_tell, length)
    meta = getattr(ds, "file_meta", None)
    tsyntax = str(meta.get("TransferSyntaxUID", "1.2.840.10008.1.2") if meta is not None else "1.2.840.10008.1.2")
    if force and (meta is None or "TransferSyntaxUID" not in meta):  # bare data set: the encoding pydicom found
        implicit, little = ds.original_encoding
        tsyntax = "1.2.840.10008.1.2.2" if not little else ("1.2.840.10008.1.2" if implicit else EXPLICIT_LE)
    offset: int | None = None
    length = 0
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    bits = int(ds.get("BitsAllocated") or 16)
    expected = rows * cols * (bits // 8) * int(ds.get("SamplesPerPixel") or 1) * int(as_float(ds.get("NumberOfFrames")) or 1)
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
    series_uid = identifier(get, "SeriesInstanceUID", path)
    rows, cols = int(get("Rows") or 0), int(get("Columns") or 0)
    bits = int(get("BitsAllocated") or 16)
    frames = int(as_float(get("NumberOfFrames")) or 1)
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
        study_uid=identifier(get, "StudyInstanceUID", path),
        series_uid=series_uid,
        series_number=int(float(series_number)) if series_number not in (None, "") else None,
        rows=rows,
        cols=cols,
        iop=np.array(vectors["ImageOrientationPatient"], dtype=float),
        ipp=np.array(vectors["ImagePositionPatient"], dtype=float),
        pixel_spacing=(vectors["PixelSpacing"][0], vectors["PixelSpacing"][1]),
        slope=as_float(get("RescaleSlope")) or 1.0,  # absent or 0 (invalid) means no scaling
        intercept=as_float(get("RescaleIntercept")) or 0.0,
        clock=_clock(_Getter(get)),
        temporal={t: as_float(get(t)) for t in TEMPORAL_TAGS[:3]},
        pixel_offset=offset,
        pixel_length=length,
        transfer_syntax=tsyntax,
        bits_allocated=bits,
        signed=int(get("PixelRepresentation") or 0) == 1,
        bits_stored=int(bits_stored) if bits_stored not in (None, "") else None,
        sop_uid=identifier(get, "SOPInstanceUID", path),
        patient_id=clean_text(str(get("PatientID") or ""), "PatientID", str(path)) or "",
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


def _fast_header(path: Path) -> Slice | None:
    """A Slice from the walker, None when the walker does not handle the file; raises for truncated pixels."""
    got = walk(path)
    if got is None:
        return None
    values = got.values
    rows, cols = int(values.get("Rows") or 0), int(values.get("Columns") or 0)
    bits = int(values.get("BitsAllocated") or 16)
    expected = (rows * cols * (bits // 8) * int(values.get("SamplesPerPixel") or 1) *
                int(as_float(values.get("NumberOfFrames")) or 1))
    if got.pixel_start + got.pixel_length > got.file_size or got.pixel_length < expected:
        raise DicomError(f"truncated file: pixel data needs {max(got.pixel_length, expected)} bytes at offset "
                         f"{got.pixel_start}, file has {got.file_size}", str(path))
    offset = got.pixel_start if bits in (8, 16) and int(values.get("SamplesPerPixel") or 1) == 1 else None
    return _make_slice(path, values.get, got.transfer_syntax, offset, got.pixel_length)


def expand_frames(s: Slice) -> list[Slice]:
    """One Slice per frame of a multi-frame file (Enhanced MR: geometry, rescale and time per frame from the
    per-frame and shared functional groups, else the top-level tags)."""
    ds = pydicom.dcmread(s.path, stop_before_pixels=True, force=True)
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    if per and len(per) != s.n_frames:
        raise DicomError(f"{len(per)} per-frame functional groups for {s.n_frames} frames", where(s))
    frame_bytes = s.rows * s.cols * (s.bits_allocated // 8)
    out = []
    for i in range(s.n_frames):
        groups = [per[i] if per else None, shared]

        def vec(seq: str, key: str, n: int, frame_groups: list[Any] = groups) -> list[float] | None:
            value = group_value(frame_groups, key, seq)
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
        slope = as_float(group_value(groups, "RescaleSlope", "PixelValueTransformationSequence"))
        inter = as_float(group_value(groups, "RescaleIntercept", "PixelValueTransformationSequence"))
        content = group_value(groups, "FrameAcquisitionDateTime", "FrameContentSequence")
        clock = s.clock
        if content:
            try:
                clock = DT(str(content)).timestamp()
            except (ValueError, TypeError, OverflowError):
                pass
        temporal = dict(s.temporal)
        tpi = as_float(group_value(groups, "TemporalPositionIndex", "FrameContentSequence"))
        if tpi is not None:
            temporal["TemporalPositionIdentifier"] = tpi
        trig = as_float(group_value(groups, "NominalCardiacTriggerDelayTime", "CardiacSynchronizationSequence"))
        if trig is not None:
            temporal["TriggerTime"] = trig
        out.append(dataclasses.replace(
            s, iop=np.array(iop or [0.0] * 6), ipp=np.array(ipp or [0.0] * 3),
            pixel_spacing=tuple(spacing) if spacing else (0.0, 0.0),  # type: ignore[arg-type]
            slope=slope or s.slope, intercept=inter if inter is not None else s.intercept, clock=clock,
            temporal=temporal, frame=i, n_frames=s.n_frames,
            pixel_offset=None if s.pixel_offset is None else s.pixel_offset + i * frame_bytes,
            sop_uid=f"{s.sop_uid}#{i}" if s.sop_uid else "",
            geometry_error=f"frame {i}: missing {missing[0]}" if missing else None, header=ds))
    return out
