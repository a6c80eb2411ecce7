"""Pixel assembly: the voxels of one phase read straight into one (k, r, c) array, rescaled.

Uncompressed little-endian slices are read at the offset the inventory found (no pydicom parse, no copy);
anything else is decoded by pydicom's pixel handlers. Real-world values keep an integer type when the
rescale allows it, so an unscaled uint16 series stays uint16.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    for k, s in enumerate(phase.slices):
        read_plane(s, out[k])  # pydicom applies BitsStored itself to what it decodes
    return out


def read_plane(s: Slice, out: np.ndarray) -> None:
    """The stored values of one slice into ``out`` (rows, cols), as ``read_stored`` reads each of them."""
    if s.pixel_offset is not None:
        with open(s.path, "rb", buffering=0) as fh:
            fh.seek(s.pixel_offset)
            got = fh.readinto(out.data.cast("B"))
        if got != out.nbytes:
            raise DicomError(f"truncated file: read {got} of {out.nbytes} pixel bytes", where(s))
        sign_extend(out, s)
    else:
        out[...] = decode_slice(s)


def is_unscaled(phase: Phase) -> bool:
    """Every slice has slope 1 and intercept 0: the stored values are the real-world values."""
    return all(s.slope == 1.0 and s.intercept == 0.0 for s in phase.slices)


def needs_sign_extension(s: Slice, dtype: np.dtype) -> bool:
    return bool(s.signed and s.bits_stored and s.bits_stored < 8 * dtype.itemsize)


def sign_extend(plane: np.ndarray, s: Slice) -> None:
    """Signed values stored in fewer bits than allocated (e.g. 12 of 16): the raw bytes need sign extension."""
    if needs_sign_extension(s, plane.dtype):
        shift = 8 * plane.dtype.itemsize - int(s.bits_stored or 0)
        plane <<= shift
        plane >>= shift  # arithmetic shift on a signed dtype


def decode_slice(s: Slice) -> np.ndarray:
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


@dataclass(frozen=True)
class Rescale:
    """How a rescaled phase's stored values become real-world values, decided once for the whole phase.

    The output type depends on the whole phase's stored range (the smallest integer type that holds every
    value when slopes and intercepts are whole numbers, else float32), so it is decided from the range and
    then applied plane by plane: the whole-array reader and the streaming writer share this, byte for byte.
    """

    slopes: np.ndarray  # per slice, float64
    inters: np.ndarray
    dtype: np.dtype  # of the real-world values
    wide: np.dtype | None  # integer type the integral arithmetic runs in; None: float32 arithmetic

    def plane(self, stored: np.ndarray, k: int) -> np.ndarray:
        """Real-world values of slice ``k`` from its stored values."""
        if self.wide is None:
            return (stored.astype(np.float32) * np.float32(self.slopes[k]) + np.float32(self.inters[k]))
        wide = stored.astype(self.wide)
        wide *= self.wide.type(int(self.slopes[k]))
        wide += self.wide.type(int(self.inters[k]))
        return wide.astype(self.dtype)


def rescale_for(phase: Phase, lo: float, hi: float) -> Rescale | None:
    """The rescale of ``phase`` whose stored values span [lo, hi]; None when it is the identity."""
    slopes = np.array([s.slope for s in phase.slices], dtype=np.float64)
    inters = np.array([s.intercept for s in phase.slices], dtype=np.float64)
    if np.all(slopes == 1.0) and np.all(inters == 0.0):
        return None
    stored = stored_dtype(phase.slices[0])
    if np.all(slopes == np.round(slopes)) and np.all(inters == np.round(inters)):
        ends = [x * a + b for x in (lo, hi) for a in slopes for b in inters]
        # Smallest integer type holding every value (the stored type first: unchanged files stay uint16).
        for dt in (stored, np.dtype("<u2"), np.dtype("<i2"), np.dtype("<i4")):
            info = np.iinfo(dt)
            if info.min <= min(ends) and max(ends) <= info.max:
                return Rescale(slopes, inters, dt, np.dtype(np.int64 if dt.itemsize >= 4 else np.int32))
    return Rescale(slopes, inters, np.dtype(np.float32), None)


def read_phase(phase: Phase) -> np.ndarray:
    """Real-world values of a phase as (k, r, c): integer dtype kept when the rescale allows, else float32."""
    stored = read_stored(phase)
    rescale = rescale_for(phase, float(stored.min()), float(stored.max())) if stored.size else None
    if rescale is None:
        return stored
    out = np.empty(stored.shape, dtype=rescale.dtype)
    for k in range(out.shape[0]):
        out[k] = rescale.plane(stored[k], k)
    return out
