"""Mask bookkeeping in segmentation_methods.json (issue 16, deliverable 3): the model by the hash of its files,
each mask's sha256, curator edits never overwritten on a method switch, pending entries before the work."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from etl.layout import Layout
from etl.segment.bookkeeping import METHODS_FILE, read_methods
from etl.segment.io import write_nifti
from etl.segment.nnunet import TINY_MODEL, TRAINER_DIR, model_digest, resolve_model
from etl.segment.stage import run_segmentation


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy(src: Path, tmp_path: Path) -> tuple[Path, Layout]:
    root = tmp_path / "staged"
    shutil.copytree(src, root)
    return root, Layout.from_definition(root)


def test_model_recorded_by_hash_and_masks_by_sha256(nnunet_run) -> None:
    root, res = nnunet_run
    layout = Layout.from_definition(root)
    record = read_methods(root)
    digest = model_digest(resolve_model(TINY_MODEL))
    assert res.model_sha256 == digest and len(digest) == 64
    assert len(record) == 6
    for pid, entry in record.items():
        assert entry["status"] == "done" and entry["method"] == "nnunet" and entry["folds"] == [0]
        assert entry["model_sha256"] == digest and entry["model"] == TRAINER_DIR  # a name, never a path
        assert entry["mask_sha256"] == _sha(layout.automatic_mask(pid))
    assert str(TINY_MODEL) not in (root / METHODS_FILE).read_text()


def test_model_digest_follows_the_files_not_the_path(tmp_path: Path) -> None:
    moved = tmp_path / "models" / "tiny"
    shutil.copytree(TINY_MODEL, moved)
    original = model_digest(resolve_model(TINY_MODEL))
    assert model_digest(resolve_model(moved)) == original
    assert model_digest(resolve_model(moved / TRAINER_DIR)) == original
    plans = moved / TRAINER_DIR / "plans.json"
    plans.write_text(plans.read_text().rstrip() + "\n ")  # same JSON, other bytes: another model file
    assert model_digest(resolve_model(moved)) != original


def test_resume_through_relative_or_moved_model_path_redoes_nothing(nnunet_run, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    src, _ = nnunet_run
    root, layout = _copy(src, tmp_path)
    before = {p.name: p.read_bytes() for p in (root / "segmentations" / "automatic").glob("*.nii.gz")}
    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(TINY_MODEL, moved)
    monkeypatch.chdir(tmp_path / "elsewhere")
    for given in ("model", moved, Path("model") / TRAINER_DIR):  # relative, absolute, the trainer folder itself
        res = run_segmentation(root, method="nnunet", model=given, device="cpu")
        assert res.written == [] and res.redone == [] and len(res.skipped) == 6 and res.kept == []
    assert {p.name: p.read_bytes() for p in (root / "segmentations" / "automatic").glob("*.nii.gz")} == before


def test_curator_edit_is_never_overwritten_on_a_method_switch(nnunet_run, tmp_path: Path, cli) -> None:
    src, _ = nnunet_run
    root, layout = _copy(src, tmp_path)
    edited = sorted(read_methods(root))[1]
    path = layout.automatic_mask(edited)
    img = nib.load(str(path))
    fixed = np.asarray(img.dataobj).copy()
    fixed[tuple(s // 2 for s in fixed.shape)] = 1 - fixed[tuple(s // 2 for s in fixed.shape)]  # one voxel fixed
    write_nifti(path, fixed, img)
    curated = path.read_bytes()

    res = cli("segment", root, "--ftv")
    assert res.exit_code == 0, res.stderr
    assert "segmented 5 case(s) with FTV (5 redone" in res.stdout
    assert f"kept 1 mask(s) this run would have redone (first: {edited}: mask edited by hand" in res.stdout
    assert path.read_bytes() == curated
    entry = read_methods(root)[edited]
    assert entry["status"] == "edited" and entry["method"] == "nnunet" and entry["edited_sha256"] == _sha(path)
    others = {pid: e for pid, e in read_methods(root).items() if pid != edited}
    assert all(e["method"] == "ftv" and e["mask_sha256"] == _sha(layout.automatic_mask(p)) for p, e in others.items())
    # and it stays kept on every later switch
    res = cli("segment", root, "--ftv")
    assert "segmented 0 case(s)" in res.stdout and path.read_bytes() == curated


def test_legacy_entry_without_checksum_is_kept_when_another_method_asks(phantom_staged: Path, tmp_path: Path) -> None:
    root, layout = _copy(phantom_staged, tmp_path)
    run_segmentation(root, method="ftv")
    record = read_methods(root)
    old, same = sorted(record)[:2]
    record[old] = {"method": "nnunet", "model": "/somewhere/model", "folds": [0]}  # written before checksums
    record[same] = {"method": "ftv"}
    (root / METHODS_FILE).write_text(json.dumps(record))
    res = run_segmentation(root, method="ftv")
    assert res.written == [] and [pid for pid, _ in res.kept] == [old]
    assert "before mask checksums" in res.kept[0][1]
    assert read_methods(root)[same] == {"method": "ftv", "status": "done", "mask_sha256": _sha(layout.automatic_mask(same))}


def test_a_killed_run_leaves_pending_entries_that_the_next_run_settles(phantom_staged: Path, tmp_path: Path) -> None:
    """The three states a kill can leave, built as the stage leaves them: a mask written but not yet recorded
    (adopted from its bytes, not redone and not mistaken for a hand-made mask), a redo killed before it
    replaced the earlier mask (redone), and a case not reached (made)."""
    root, layout = _copy(phantom_staged, tmp_path)
    run_segmentation(root, method="ftv")
    record = read_methods(root)
    written, replaced, unreached = sorted(record)[:3]
    sig = {"method": "ftv"}
    nnunet_done = {"method": "nnunet", "model": TRAINER_DIR, "model_sha256": "0" * 64, "folds": [0],
                   "status": "done", "mask_sha256": _sha(layout.automatic_mask(replaced))}
    record[written] = {**sig, "status": "pending", "previous": None}
    record[replaced] = {**sig, "status": "pending", "previous": nnunet_done}
    record[unreached] = {**sig, "status": "pending", "previous": None}
    layout.automatic_mask(unreached).unlink()
    (root / METHODS_FILE).write_text(json.dumps(record))
    adopted = layout.automatic_mask(written).read_bytes()

    res = run_segmentation(root, method="ftv")
    assert sorted(res.written) == sorted([replaced, unreached]) and res.redone == [replaced] and res.kept == []
    assert layout.automatic_mask(written).read_bytes() == adopted
    after = read_methods(root)
    assert all(e["status"] == "done" and e["mask_sha256"] == _sha(layout.automatic_mask(p)) for p, e in after.items())


def test_pending_entries_come_before_the_masks_and_failures_are_unrecorded(phantom_staged: Path, tmp_path: Path,
                                                                          cli) -> None:
    """Every automatic mask on disk has an entry at every moment: here a case fails mid-run (its pending
    entry is withdrawn), and a run stopped by an error before any mask leaves pending entries only."""
    root, layout = _copy(phantom_staged, tmp_path)
    bad = layout.image("BAD_0001", 0)
    bad.parent.mkdir(parents=True)
    shutil.copy(layout.image("SYN_7001", 0), bad)  # one phase only: FTV cannot measure enhancement
    res = cli("segment", root, "--ftv")
    assert res.exit_code == 1 and "BAD_0001" in res.stderr
    record = read_methods(root)
    assert "BAD_0001" not in record and len(record) == 6
    assert {p.name for p in (root / "segmentations" / "automatic").glob("*.nii.gz")} == \
        {layout.automatic_mask(pid).name for pid in record}

    # nnU-Net with a model whose checkpoint cannot be loaded: the run stops before any mask is written
    broken = tmp_path / "broken"
    shutil.copytree(TINY_MODEL, broken)
    (broken / TRAINER_DIR / "fold_0" / "checkpoint_final.pth").write_bytes(b"not a checkpoint")
    layout.automatic_mask("SYN_7002").unlink()
    with pytest.raises(Exception, match="cannot load the nnU-Net model"):
        run_segmentation(root, method="nnunet", model=broken, device="cpu")
    entry = read_methods(root)["SYN_7002"]
    assert entry["status"] == "pending" and entry["method"] == "nnunet" and entry["previous"]["method"] == "ftv"
    assert not layout.automatic_mask("SYN_7002").exists()
    res = run_segmentation(root, method="ftv")  # the next run settles it: no mask there, so it is made
    assert res.written == ["SYN_7002"] and read_methods(root)["SYN_7002"]["status"] == "done"
    assert os.path.exists(layout.automatic_mask("SYN_7002"))
