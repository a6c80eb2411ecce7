"""Staged directories built from seeded phantoms (seeds never used to train the tiny model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.segment.synthetic import stage_phantoms

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
