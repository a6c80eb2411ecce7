"""Pixel assembly: the voxels of one phase read straight into one (k, r, c) array, rescaled.

Uncompressed little-endian slices are read at the offset the inventory found (no pydicom parse, no copy);
anything else is decoded by pydicom's pixel handlers. Real-world values keep an integer type when the
rescale allows it, so an unscaled uint16 series stays uint16.
"""

from __future__ import annotations

import numpy as np
import pydicom

from etl.errors import DicomError
from etl.transform.dicom.model import Phase, Slice, where


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
                raise DicomError(f"truncated file: read {got} of {nbytes} pixel bytes", where(s))
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
        raise DicomError(f"cannot decode pixel data ({s.transfer_syntax}): {exc}", where(s)) from exc
    if arr.shape != (s.rows, s.cols):
        raise DicomError(f"pixel data shape {arr.shape} is not {s.rows}x{s.cols}", where(s))
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
