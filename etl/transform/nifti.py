"""Write a phase as NIfTI: voxels and affine exactly as DICOM says, reoriented by permutation/flip only.

Orientation codes are what nibabel's ``aff2axcodes`` reports on the written file (the direction each voxel
axis points to). The profiles (``schemas/imaging_headers.yaml``, section ``profiles``) map a view to the
codes. Reorientation never resamples: it permutes/flips the array and updates the affine, so every
voxel keeps its world position.

Compression is the cost of a conversion, so the gzip stream is written by ``etl.transform.gzipstream``
(python-isal, fixed chunks: the same input always gives the same bytes). A phase
whose reorientation keeps the slice axis as NIfTI z is streamed from the DICOM files slice by slice
(``etl.transform.phase_writer``); this module writes whole arrays and owns the orientation arithmetic both
paths share.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from etl.atomic import atomic_path
from etl.errors import ConfigError, DicomError
from etl.transform.gzipstream import ChunkedGzipWriter
from etl.transform.imaging_rules import rules_section

log = logging.getLogger("etl.transform.nifti")

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


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


def orientation_transform(affine_lps: np.ndarray, shape_crk: tuple[int, ...], codes: str | None
                          ) -> tuple[np.ndarray | None, np.ndarray]:
    """(nibabel ornt transform from the (c, r, k) axes to ``codes``, RAS affine after it); (None, RAS affine)
    when no codes are asked for. Row i of the transform: input axis i goes to output axis [i, 0], flipped
    when [i, 1] is -1."""
    ras = LPS_TO_RAS @ affine_lps
    if not codes:
        return None, ras
    xform = ornt_transform(io_orientation(ras), axcodes2ornt(tuple(codes)))
    return xform, ras @ inv_ornt_aff(xform, shape_crk)


def reorient(data: np.ndarray, affine_lps: np.ndarray, codes: str) -> tuple[np.ndarray, np.ndarray]:
    """Permute/flip ``data`` (c, r, k) so its axes point to ``codes``; return (view of data, RAS affine)."""
    xform, new_affine = orientation_transform(affine_lps, data.shape, codes)
    assert xform is not None
    return apply_orientation(data, xform), new_affine


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


def _oriented(data_crk: np.ndarray, affine_lps: np.ndarray, codes: str | None
              ) -> tuple[bytes, np.ndarray, np.ndarray]:
    """(NIfTI header, body array in file order, RAS affine) of a (c, r, k) volume."""
    if codes:
        data, affine_ras = reorient(data_crk, affine_lps, codes)
    else:
        data, affine_ras = data_crk, LPS_TO_RAS @ affine_lps
    dtype = data.dtype.newbyteorder("<") if data.dtype.byteorder == ">" else data.dtype
    header = nifti_header(data.shape, dtype, affine_ras)
    # NIfTI stores x fastest (Fortran order): the transposed array in C order is the same bytes.
    return header, np.ascontiguousarray(data.T, dtype=dtype), affine_ras


def write_nifti(path: str | Path, data_crk: np.ndarray, affine_lps: np.ndarray, codes: str | None,
                level: int | None = None) -> np.ndarray:
    """Write atomically (``.nii.gz`` compressed, ``.nii`` not); returns the RAS affine written."""
    path = Path(path)
    header, body, affine_ras = _oriented(data_crk, affine_lps, codes)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            if path.name.endswith(".gz"):
                with ChunkedGzipWriter(fh, level) as gz:
                    gz.write(header, borrow=True)
                    gz.write(body.data, borrow=True)
            else:
                fh.write(header)
                fh.write(body.data)
    return affine_ras


def write_phase(path: str | Path, stack_krc: np.ndarray, affine_lps: np.ndarray, profile: str | None,
                level: int | None = None) -> tuple[str, np.ndarray]:
    """Write one phase read as (k, r, c) in the profile's orientation; returns (view, RAS affine)."""
    view = view_of(affine_lps)
    codes = profile_codes(profile, view) if profile else None
    data_crk = stack_krc.transpose(2, 1, 0)
    return view, write_nifti(path, data_crk, affine_lps, codes, level=level)
