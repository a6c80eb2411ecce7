"""Case discovery and NIfTI reading/writing for the segmentation stage.

Masks are written on exactly the grid of the reference image (same shape, affine, qform/sform codes), as
gzip with a fixed mtime so that the same mask gives the same bytes, and atomically (``etl.atomic``).
"""

from __future__ import annotations

import gzip
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from etl.atomic import write_bytes
from etl.errors import EtlError, InputUnreadable, SegmentError
from etl.layout import Layout
from etl.types import Spacing

log = logging.getLogger("etl.segment")


@dataclass(frozen=True)
class Case:
    """One staged case: its id and the files the stage reads and writes."""

    patient_id: str  # as in the table, e.g. DUKE_001
    phases: tuple[Path, ...]
    expert: Path
    automatic: Path
    case_id: str  # nnU-Net case identifier: the definition's split.nnunet_case_id (Layout.case_id)


def case_at(layout: Layout, patient_id: str) -> Case:
    """The staged case ``patient_id`` as the layout names its files (phases: those on disk, in order)."""
    return Case(patient_id, tuple(layout.images(patient_id)), layout.expert_mask(patient_id),
                layout.automatic_mask(patient_id), layout.case_id(patient_id))


_PHASE_SENTINEL = 987_654_321  # rendered into the image template to find where the phase number goes


def _stray_phase(layout: Layout, patient_id: str, found: int) -> Path | None:
    """A phase file numbered above the first missing one (phase ``found``), or None.

    ``Layout.images`` stops at the first missing phase; a later phase on disk means a gap (e.g. 0000 and
    0002 without 0001), which must not be read as a case with fewer phases.
    """
    probe = layout.image(patient_id, _PHASE_SENTINEL)
    if str(_PHASE_SENTINEL) not in probe.name or not probe.parent.is_dir():
        return None
    pattern = re.compile(re.escape(probe.name).replace(str(_PHASE_SENTINEL), r"(\d+)") + "$")
    for p in sorted(probe.parent.iterdir()):
        m = pattern.match(p.name)
        if m and int(m.group(1)) > found and layout.image(patient_id, int(m.group(1))) == p:
            return p
    return None


def scan_cases(layout: Layout) -> tuple[list[Case], list[tuple[str, EtlError]]]:
    """Cases = the case folders of the image template (``images/``), sorted; plus the folders that are not
    usable cases.

    A folder without phase 0000, or with a gap in its phase numbers, is returned as (patient_id, error)
    so the stage can record it and go on with the others. No folder at all is an error.
    """
    images = layout.folder("image")
    where = images.relative_to(layout.root).as_posix()
    if not images.is_dir():
        raise InputUnreadable(f"not a staged directory: no {where}/ folder", str(layout.root))
    cases: list[Case] = []
    problems: list[tuple[str, EtlError]] = []
    folders = sorted(p for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputUnreadable(f"no cases under {where}/", str(images))
    for folder in folders:
        pid = folder.name
        phases = tuple(layout.images(pid))
        if not phases:
            problems.append((pid, InputUnreadable("case folder has no phase 0000 named as the release definition says",
                                                  str(layout.image(pid, 0)))))
            continue
        stray = _stray_phase(layout, pid, len(phases))
        if stray is not None:
            problems.append((pid, InputUnreadable(f"phase {len(phases):04d} is missing but {stray.name} exists",
                                                  str(layout.image(pid, len(phases))))))
            continue
        cases.append(case_at(layout, pid))
    return cases, problems


def find_cases(layout: Layout) -> list[Case]:
    """The usable cases (see ``scan_cases``); the first unusable case folder is raised as its error."""
    cases, problems = scan_cases(layout)
    if problems:
        raise problems[0][1]
    return cases


def load(path: Path) -> nib.Nifti1Image:
    try:
        img = nib.load(str(path))  # parses the header; data is read lazily by read_array
    except (OSError, nib.filebasedimages.ImageFileError, EOFError) as exc:
        raise InputUnreadable(f"cannot read NIfTI: {exc}", str(path)) from exc
    if not isinstance(img, nib.Nifti1Image):  # NIfTI-2 is a subclass
        raise InputUnreadable(f"not a NIfTI image ({type(img).__name__})", str(path))
    if len(img.shape) != 3:
        raise InputUnreadable(f"expected a 3-D image, got shape {img.shape}", str(path))
    return img


def read_array(path: Path, dtype: type = np.float32) -> np.ndarray:
    img = load(path)
    try:
        return np.asarray(img.dataobj, dtype=dtype)
    except (OSError, EOFError, ValueError, gzip.BadGzipFile) as exc:
        raise InputUnreadable(f"cannot read NIfTI data: {exc}", str(path)) from exc


def phase_index(n: int, k: int, what: str = "input", where: str | None = None) -> int:
    """Index of phase ``k`` (negative counts from the last) in a case of ``n`` phases, or a SegmentError."""
    idx = k if k >= 0 else n + k
    if not 0 <= idx < n:
        raise SegmentError(f"{what} phase {k} requested but the case has {n} phase(s)", where)
    return idx


def reference_phase(case: Case, input_phase: int) -> Path:
    """The phase whose grid the mask is written on (the network input phase; 0001 in MAMA-MIA)."""
    return case.phases[phase_index(len(case.phases), input_phase, "input", str(case.phases[0].parent))]


def same_grid(a: nib.Nifti1Image, b: nib.Nifti1Image) -> bool:
    """Same voxel grid: equal shape and affines equal to 1e-3 (mm, or direction cosines)."""
    return tuple(a.shape) == tuple(b.shape) and np.allclose(a.affine, b.affine, atol=1e-3)


def grid_difference(img: nib.Nifti1Image, ref: nib.Nifti1Image) -> str:
    """What differs between two grids, for error messages."""
    if tuple(img.shape) != tuple(ref.shape):
        return f"shape {tuple(img.shape)} vs {tuple(ref.shape)}"
    worst = float(np.abs(img.affine - ref.affine).max())
    return f"same shape, affines differ by up to {worst:.3g}"


def read_phases(case: Case) -> tuple[np.ndarray, nib.Nifti1Image]:
    """All phases stacked (n, x, y, z) float32, plus the header image of phase 0 (grids must agree).

    Non-finite voxels (NaN, inf) are read as 0, i.e. no signal, with a warning naming the file.
    """
    ref = load(case.phases[0])
    arrays = []
    for p in case.phases:
        img = load(p)
        if not same_grid(img, ref):
            raise SegmentError(f"phase is not on the grid of phase 0000: {grid_difference(img, ref)}", str(p))
        arr = read_array(p)
        bad = ~np.isfinite(arr)
        if bad.any():  # NaN/inf (e.g. outside a resampled field of view) would poison PE and the z-score
            log.warning("%s: %d non-finite voxel(s) read as 0 (no signal)", p, int(bad.sum()))
            arr[bad] = 0.0
        arrays.append(arr)
    return np.stack(arrays), ref


def spacing_of(img: nib.Nifti1Image) -> Spacing:
    """Voxel size in mm along the array axes (from the affine, so it matches the world grid)."""
    x, y, z = (float(v) for v in np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0)))
    return x, y, z


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
