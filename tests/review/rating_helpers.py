"""Staged data for the rating tests: six seeded phantom cases (64 x 64 x 24 voxels of 2 x 2 x 4 mm, four
phases) from three collections, with automatic masks of known quality made from the phantom truth:

- DUKE_7001, ISPY1_7004: the truth itself (good)
- DUKE_7002: the truth dilated by one voxel (acceptable)
- ISPY1_7003: the truth shifted by 6 voxels towards the patient's left (poor)
- NACT_7005: empty, with a lesion box in its patient info (missed)
- NACT_7006: no automatic mask (not reviewable)

Built once per session (``review_staged``) and treated as read-only: a test that changes files copies it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

REVIEWABLE = ["DUKE_7001", "DUKE_7002", "ISPY1_7003", "ISPY1_7004", "NACT_7005"]
ALL_IDS = REVIEWABLE + ["NACT_7006"]
_BUILT: dict[str, Path] = {}


def build_review_staged(base: Path) -> Path:
    import nibabel as nib
    from scipy import ndimage

    from etl.layout import Layout
    from etl.segment.io import write_nifti
    from etl.synth.staged import stage_phantom
    from etl.synth.phantom import make_phantom

    root = base / "staged"
    layout = Layout.from_definition(root)
    for pid in ALL_IDS:
        seed = int(pid.rsplit("_", 1)[1])
        stage_phantom(layout, pid, make_phantom(seed))
    for pid in REVIEWABLE:
        truth_path = layout.expert_mask(pid)
        like = nib.load(str(truth_path))
        truth = np.asarray(like.dataobj) > 0
        if pid == "DUKE_7002":
            auto = ndimage.binary_dilation(truth)
        elif pid == "ISPY1_7003":
            auto = np.roll(truth, 6, axis=0)
        elif pid == "NACT_7005":
            auto = np.zeros_like(truth)
            idx = np.argwhere(truth)
            lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
            info = layout.patient_info(pid)
            info.parent.mkdir(parents=True, exist_ok=True)
            info.write_text(json.dumps({"patient_id": pid, "lesion_box": [[int(a), int(b)] for a, b in zip(lo, hi)]}))
        else:
            auto = truth
        write_nifti(layout.automatic_mask(pid), auto.astype(np.uint8), like, dtype=np.uint8, level=1)
    return root


def review_staged(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """The session's staged directory (built on first use; read-only)."""
    if "staged" not in _BUILT:
        _BUILT["staged"] = build_review_staged(tmp_path_factory.mktemp("review-staged"))
    return _BUILT["staged"]


def copy_staged(src: Path, dst: Path) -> Path:
    """A private copy without any review cache."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("review"))
    return dst
