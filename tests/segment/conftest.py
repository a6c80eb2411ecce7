"""Staged directories built from seeded phantoms (seeds never used to train the tiny model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.synth.staged import stage_phantoms

# The tiny model was trained on seeds 10000+ and measured on 90000+; tests use yet other seeds.
UNSEEN_SEEDS = [7001, 7002, 7003, 7004, 7005, 7006]


def make_staged(root: Path, seeds: list[int], **kwargs: object) -> Path:
    stage_phantoms(root, seeds, **kwargs)
    return root


@pytest.fixture(scope="session")
def phantom_staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six unseen phantom cases with expert masks; treat as read-only (copy before segmenting)."""
    return make_staged(tmp_path_factory.mktemp("staged"), UNSEEN_SEEDS)


@pytest.fixture(scope="session")
def nnunet_run(phantom_staged: Path, tmp_path_factory: pytest.TempPathFactory):
    """One tiny-model run over the unseen phantoms (the expensive part, done once)."""
    import shutil

    from etl.segment.stage import run_segmentation

    root = tmp_path_factory.mktemp("nnunet") / "staged"
    shutil.copytree(phantom_staged, root)
    return root, run_segmentation(root, method="nnunet", device="cpu")


@pytest.fixture(scope="session")
def rewrite_case():
    """``rewrite_case(root, pid, kind)``: see ``_rewrite_case``."""
    return _rewrite_case


def _rewrite_case(root: Path, pid: str, kind: str) -> None:
    """Rewrite every file of a staged case on another grid with the same world geometry.

    ``oblique``: affine rotated 20 degrees about the scanner z axis (voxels unchanged).
    ``sagittal``: array axes permuted to (y, z, x) and the first flipped, affine updated to match, so the
    file is a non-axial orientation of the same object.
    """
    import nibabel as nib
    import numpy as np

    from etl.layout import Layout
    from etl.segment.io import write_nifti

    layout = Layout.from_definition(root)
    files = layout.images(pid) + [p for p in [layout.expert_mask(pid)] if p.exists()]
    for p in files:
        img = nib.load(str(p))
        data, aff = np.asarray(img.dataobj), img.affine.copy()
        if kind == "oblique":
            t = np.deg2rad(20.0)
            rot = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
            aff[:3, :3] = rot @ aff[:3, :3]
        elif kind == "sagittal":
            perm = (1, 2, 0)
            data = np.transpose(data, perm)[::-1]
            new = np.eye(4)
            new[:3, :3] = aff[:3, :3][:, list(perm)]
            new[:3, 0] *= -1
            # voxel 0 of the new array is voxel (.., .., n-1) along the flipped axis of the old one
            new[:3, 3] = aff[:3, 3] - new[:3, 0] * (data.shape[0] - 1)
            aff = new
        else:
            raise ValueError(kind)
        like = nib.Nifti1Image(np.zeros(data.shape, np.int16), aff)
        like.set_qform(aff, 1)
        like.set_sform(aff, 1)
        write_nifti(p, np.ascontiguousarray(data), like, dtype=img.get_data_dtype().type, level=1)
