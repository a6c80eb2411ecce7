"""Case discovery and NIfTI reading/writing for the segmentation stage.

Masks are written on exactly the grid of the reference image (same shape, affine, qform/sform codes), as
gzip with a fixed mtime so that the same mask gives the same bytes, and atomically (``etl.atomic``).
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from etl.atomic import write_bytes
from etl.errors import InputUnreadable, SegmentError
from etl.layout import Layout

log = logging.getLogger("etl.segment")


@dataclass(frozen=True)
class Case:
    """One staged case: its id and the files the stage reads and writes."""

    patient_id: str  # as in the table, e.g. DUKE_001
    phases: tuple[Path, ...]
    expert: Path
    automatic: Path

    @property
    def case_id(self) -> str:
        """nnU-Net case identifier (lower-case patient id, as in the file names)."""
        return self.patient_id.lower()


def find_cases(layout: Layout) -> list[Case]:
    """Cases = the folders under images/, sorted; each must have at least a pre- and a post-contrast phase."""
    images = layout.root / "images"
    if not images.is_dir():
        raise InputUnreadable("not a staged directory: no images/ folder", str(layout.root))
    cases = []
    for folder in sorted(p for p in images.iterdir() if p.is_dir() and not p.name.startswith(".")):
        pid = folder.name
        phases = tuple(layout.images(pid))
        if not phases:
            raise InputUnreadable("case folder has no phase files named as the release definition says",
                                  str(layout.image(pid, 0)))
        cases.append(Case(pid, phases, layout.expert_mask(pid), layout.automatic_mask(pid)))
    if not cases:
        raise InputUnreadable("no cases under images/", str(images))
    return cases


def load(path: Path) -> nib.Nifti1Image:
    try:
        img = nib.load(str(path))  # parses the header; data is read lazily by read_array
    except (OSError, nib.filebasedimages.ImageFileError, EOFError) as exc:
        raise InputUnreadable(f"cannot read NIfTI: {exc}", str(path)) from exc
    if len(img.shape) != 3:
        raise InputUnreadable(f"expected a 3-D image, got shape {img.shape}", str(path))
    return img  # type: ignore[return-value]


def read_array(path: Path, dtype: type = np.float32) -> np.ndarray:
    img = load(path)
    try:
        return np.asarray(img.dataobj, dtype=dtype)
    except (OSError, EOFError, ValueError, gzip.BadGzipFile) as exc:
        raise InputUnreadable(f"cannot read NIfTI data: {exc}", str(path)) from exc


def read_phases(case: Case) -> tuple[np.ndarray, nib.Nifti1Image]:
    """All phases stacked (n, x, y, z) float32, plus the header image of phase 0 (grids must agree)."""
    ref = load(case.phases[0])
    arrays = []
    for p in case.phases:
        img = load(p)
        if img.shape != ref.shape or not np.allclose(img.affine, ref.affine, atol=1e-3):
            raise SegmentError("phases of a case are not on the same grid", str(p))
        arrays.append(read_array(p))
    return np.stack(arrays), ref


def spacing_of(img: nib.Nifti1Image) -> tuple[float, float, float]:
    """Voxel size in mm along the array axes (from the affine, so it matches the world grid)."""
    return tuple(float(v) for v in np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]


def nifti_bytes(data: np.ndarray, like: nib.Nifti1Image, dtype: type = np.uint8, level: int = 6) -> bytes:
    """Gzipped NIfTI-1 bytes of ``data`` on the grid of ``like`` (affine, qform/sform codes kept)."""
    if tuple(data.shape) != tuple(like.shape):
        raise SegmentError(f"array shape {data.shape} differs from the image grid {like.shape}")
    hdr = like.header.copy()
    hdr.set_data_dtype(dtype)
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), like.affine, header=hdr)
    qform, qcode = like.get_qform(coded=True)
    sform, scode = like.get_sform(coded=True)
    img.set_qform(qform if qform is not None else like.affine, int(qcode) if qform is not None else 1)
    img.set_sform(sform if sform is not None else like.affine, int(scode) if sform is not None else 1)
    img.header["scl_slope"] = 1.0 if dtype is not np.uint8 else np.nan
    img.header["scl_inter"] = 0.0 if dtype is not np.uint8 else np.nan
    return gzip.compress(img.to_bytes(), compresslevel=level, mtime=0)


def write_nifti(target: Path, data: np.ndarray, like: nib.Nifti1Image, dtype: type = np.uint8, level: int = 6) -> Path:
    """Write atomically; a killed run never leaves a half-written mask under its final name."""
    return write_bytes(target, nifti_bytes(data, like, dtype, level))
