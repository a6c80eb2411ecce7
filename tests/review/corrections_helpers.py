"""Staged data for the expert-correction tests (assign, import, figures, release): the release tests' small
staged directory (8 real v1 cases, 12 x 10 x 6 voxels of 0.8 x 0.8 x 2 mm, automatic masks on 6 of them)
with the expert masks removed, so the automatic masks are waiting for experts."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from tests.release.release_helpers import Staged, make_staged


def review_staged(base: Path) -> Staged:
    """Staged dir + table + definition under ``base``; no expert masks."""
    st = make_staged(base)
    shutil.rmtree(st.root / "segmentations" / "expert")
    return st


def copy_staged(st: Staged, base: Path) -> Staged:
    """A private copy (staged dir, table and definition keep their relative paths)."""
    src = st.root.parent
    dst = base / "work"
    shutil.copytree(src, dst)
    return Staged(dst / "staged", dst / st.table.name, dst / "defs" / st.definition.name, list(st.ids))


def voxel_cm3(image: Path) -> float:
    """Voxel volume in cm3 of an image file, from its affine (the header stores float32: 0.8 mm is
    0.800000011920929 mm there, and that is the geometry the data has)."""
    aff = nib.load(str(image)).affine
    return float(np.prod(np.sqrt((aff[:3, :3] ** 2).sum(axis=0)))) / 1000.0


def save_like(path: Path, data: np.ndarray, like: Path, dtype: type = np.uint8) -> None:
    """Write ``data`` as a NIfTI with ``like``'s affine (what a viewer saving in place does)."""
    ref = nib.load(str(like))
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), ref.affine)
    img.set_qform(ref.affine, 1)
    img.set_sform(ref.affine, 1)
    nib.save(img, str(path))


def read(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)
