"""Write a phase as NIfTI: voxels and affine exactly as DICOM says, reoriented by permutation/flip only.

Orientation codes are what nibabel's ``aff2axcodes`` reports on the written file (the direction each voxel
axis points to). The profiles (``schemas/imaging_headers.yaml``, section ``profiles``) map a view to the
codes. Reorientation never resamples: it permutes/flips the array and updates the affine, so every
voxel keeps its world position.

Compression is the cost of a conversion (zlib level 6 runs ~15 MB/s), so the gzip stream is made with
python-isal when available (``isal_zlib``, ~10x zlib), in fixed-size independent chunks that threads can
deflate in parallel and that are joined into one standard gzip member (pigz's trick, sync-flushed raw
deflate blocks). Chunk size, level and header are fixed, so the bytes do not depend on the thread count
or the clock: same input, same file.
"""

from __future__ import annotations

import logging
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from etl.atomic import atomic_path
from etl.errors import ConfigError, DicomError
from etl.transform.imaging_rules import rules_section

log = logging.getLogger("etl.transform.nifti")

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
CHUNK = 1 << 22  # 4 MiB of raw data per deflate chunk (fixed: the output must not depend on threads)
GZIP_HEADER = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"  # no name, mtime 0, OS unknown

try:  # fast deflate; the pure-zlib fallback gives valid (different) bytes, just slower
    from isal import isal_zlib as _zlib

    BACKEND = "isal"
    DEFAULT_LEVEL = 1  # isal levels 0-3
except ImportError:  # pragma: no cover - exercised only where isal is missing
    import zlib as _zlib  # type: ignore[no-redef]

    BACKEND = "zlib"
    DEFAULT_LEVEL = 1


def profiles() -> dict[str, dict[str, str]]:
    """Orientation profiles: name -> view -> axis codes."""
    return dict(rules_section("profiles") or {})


def profile_codes(profile: str, view: str) -> str:
    table = profiles()
    if profile not in table:
        raise ConfigError(f"unknown orientation profile {profile!r} (known: {', '.join(sorted(table))})",
                          "schemas/imaging_headers.yaml")
    codes = table[profile].get(view)
    if not codes:
        raise DicomError(f"profile {profile!r} has no orientation for {view} acquisitions",
                         "schemas/imaging_headers.yaml")
    return str(codes)


def view_of(affine_lps: np.ndarray) -> str:
    """Acquisition plane from the slice direction: axial (S-I), sagittal (L-R) or coronal (A-P)."""
    normal = np.cross(affine_lps[:3, 0], affine_lps[:3, 1])
    axis = int(np.argmax(np.abs(normal)))
    return ("sagittal", "coronal", "axial")[axis]


def reorient(data: np.ndarray, affine_lps: np.ndarray, codes: str) -> tuple[np.ndarray, np.ndarray]:
    """Permute/flip ``data`` (c, r, k) so its axes point to ``codes``; return (view of data, RAS affine)."""
    ras = LPS_TO_RAS @ affine_lps
    current = io_orientation(ras)
    xform = ornt_transform(current, axcodes2ornt(tuple(codes)))
    out = apply_orientation(data, xform)
    new_affine = ras @ inv_ornt_aff(xform, data.shape)
    return out, new_affine


def nifti_header(shape: tuple[int, ...], dtype: np.dtype, affine_ras: np.ndarray, spacing_t: float = 0.0) -> bytes:
    """348-byte NIfTI-1 header + empty extension flag (vox_offset 352); qform and sform = scanner."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr.set_qform(affine_ras, code=1)
    hdr.set_sform(affine_ras, code=1)
    hdr.set_xyzt_units("mm", "sec")
    hdr["vox_offset"] = 352
    return hdr.binaryblock + b"\x00\x00\x00\x00"


def _deflate_chunk(chunk: memoryview, level: int, last: bool) -> bytes:
    c = _zlib.compressobj(level, _zlib.DEFLATED, -15)
    out = c.compress(chunk)
    return out + c.flush(_zlib.Z_FINISH if last else _zlib.Z_SYNC_FLUSH)


def gzip_bytes(parts: list[bytes | memoryview], level: int | None = None, threads: int = 1) -> bytes:
    """One gzip member of the concatenated ``parts``; deterministic for a given backend and level."""
    level = DEFAULT_LEVEL if level is None else level
    views = [memoryview(p).cast("B") for p in parts]
    total = sum(len(v) for v in views)
    crc = 0
    for v in views:
        crc = _zlib.crc32(v, crc)
    # Fixed-size chunks over the logical concatenation (without joining the buffers).
    chunks: list[memoryview | bytes] = []
    pending = b""
    for v in views:
        start = 0
        if pending:
            need = CHUNK - len(pending)
            pending = pending + bytes(v[:need])
            start = need
            if len(pending) == CHUNK:
                chunks.append(pending)
                pending = b""
        while start + CHUNK <= len(v):
            chunks.append(v[start:start + CHUNK])
            start += CHUNK
        if start < len(v):
            pending = pending + bytes(v[start:])
    if pending or not chunks:
        chunks.append(pending)
    n = len(chunks)
    if threads > 1 and n > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            bodies = list(pool.map(lambda ic: _deflate_chunk(ic[1], level, ic[0] == n - 1), enumerate(chunks)))
    else:
        bodies = [_deflate_chunk(c, level, i == n - 1) for i, c in enumerate(chunks)]
    return b"".join([GZIP_HEADER, *bodies, struct.pack("<II", crc & 0xFFFFFFFF, total & 0xFFFFFFFF)])


def default_threads() -> int:
    """Deflate threads for one conversion: the CPUs this process may use (a pool worker gets 1 via env)."""
    env = os.environ.get("MAMAMIA_GZIP_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def encode(data_crk: np.ndarray, affine_lps: np.ndarray, codes: str | None, compress: bool = True,
           level: int | None = None, threads: int | None = None) -> tuple[bytes, np.ndarray]:
    """NIfTI file bytes for a (c, r, k) volume; returns (bytes, RAS affine written)."""
    if codes:
        data, affine_ras = reorient(data_crk, affine_lps, codes)
    else:
        data, affine_ras = data_crk, LPS_TO_RAS @ affine_lps
    dtype = data.dtype.newbyteorder("<") if data.dtype.byteorder == ">" else data.dtype
    header = nifti_header(data.shape, dtype, affine_ras)
    # NIfTI stores x fastest (Fortran order): the transposed array in C order is the same bytes.
    body = np.ascontiguousarray(data.T, dtype=dtype)
    if not compress:
        return header + body.tobytes(), affine_ras
    return gzip_bytes([header, body.data], level, threads or default_threads()), affine_ras


def write_nifti(path: str | Path, data_crk: np.ndarray, affine_lps: np.ndarray, codes: str | None,
                level: int | None = None, threads: int | None = None) -> np.ndarray:
    """Write atomically (``.nii.gz`` compressed, ``.nii`` not); returns the RAS affine written."""
    path = Path(path)
    blob, affine_ras = encode(data_crk, affine_lps, codes, compress=path.name.endswith(".gz"), level=level,
                              threads=threads)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(blob)
    return affine_ras


def write_phase(path: str | Path, stack_krc: np.ndarray, affine_lps: np.ndarray, profile: str | None,
                level: int | None = None, threads: int | None = None) -> tuple[str, np.ndarray]:
    """Write one phase read as (k, r, c) in the profile's orientation; returns (view, RAS affine)."""
    view = view_of(affine_lps)
    codes = profile_codes(profile, view) if profile else None
    data_crk = stack_krc.transpose(2, 1, 0)
    return view, write_nifti(path, data_crk, affine_lps, codes, level=level, threads=threads)
