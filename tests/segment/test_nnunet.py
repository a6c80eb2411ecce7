"""nnU-Net path: raw-layout export, model folder handling, the shipped tiny model, grid and resume."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from etl.errors import SegmentError
from etl.layout import Layout
from etl.segment.config import load_config
from etl.segment.io import find_cases, read_array
from etl.segment.nnunet import TINY_MODEL, TRAINER_DIR, export_raw, input_channel, nnunet_available, resolve_model

MAMAMIA = Path(sys.executable).with_name("mamamia")


def test_nnunet_is_installed_here() -> None:
    assert nnunet_available()  # the README's test command installs the `segment` extra


def test_export_raw_layout(phantom_staged: Path, tmp_path: Path) -> None:
    config = load_config()
    cases = find_cases(Layout.from_definition(phantom_staged))
    out = export_raw(cases[:2], tmp_path / "Dataset999_Test", config)
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": config.channel_name}
    assert ds["labels"] == {"background": 0, "tumor": 1} and ds["file_ending"] == ".nii.gz"
    files = sorted(p.name for p in (out / "imagesTs").iterdir())
    assert files == [f"{c.case_id}_0000.nii.gz" for c in cases[:2]]
    # channel = input_phase (1), z-scored with the mean/sd of all phases (MAMA-MIA preprocessing)
    phases = np.stack([read_array(p) for p in cases[0].phases])
    got = read_array(out / "imagesTs" / files[0])
    expect = (phases[1] - phases.mean()) / phases.std()
    assert np.allclose(got, expect, atol=1e-4)
    src = nib.load(str(cases[0].phases[1]))
    assert np.allclose(nib.load(str(out / "imagesTs" / files[0])).affine, src.affine)
    train = export_raw(cases[:2], tmp_path / "Dataset998_Train", config, training=True)
    assert sorted(p.name for p in (train / "labelsTr").iterdir()) == [f"{c.case_id}.nii.gz" for c in cases[:2]]
    assert json.loads((train / "dataset.json").read_text())["numTraining"] == 2


def test_input_channel_options() -> None:
    from dataclasses import replace

    phases = np.stack([np.full((2, 2, 2), v, np.float32) for v in (10.0, 30.0, 20.0)])
    config = load_config()
    assert np.allclose(input_channel(phases, replace(config, normalization="none")), 30.0)
    assert np.allclose(input_channel(phases, replace(config, normalization="zscore_all_phases")),
                       (30.0 - 20.0) / phases.std())
    assert np.allclose(input_channel(phases, replace(config, input_phase=-1, normalization="none")), 20.0)
    with pytest.raises(SegmentError):
        input_channel(phases, replace(config, input_phase=5))


def test_model_folder_forms(tmp_path: Path) -> None:
    parent = resolve_model(TINY_MODEL)
    assert parent.path.name == TRAINER_DIR and parent.folds == (0,)
    assert resolve_model(TINY_MODEL / TRAINER_DIR) == parent  # the trainer folder itself
    assert resolve_model(None) == parent  # default: the shipped tiny model
    with pytest.raises(SegmentError, match="fold"):
        resolve_model(TINY_MODEL, folds=(0, 1, 2, 3, 4))
    with pytest.raises(SegmentError, match="no nnU-Net model"):
        resolve_model(tmp_path)
    with pytest.raises(SegmentError, match="not found"):
        resolve_model(tmp_path / "nope")


def test_shipped_model_is_small_and_documented() -> None:
    size = sum(p.stat().st_size for p in TINY_MODEL.rglob("*") if p.is_file())
    assert size < 5_000_000
    meta = json.loads((TINY_MODEL / "metadata.json").read_text())
    assert meta["eval_dice_mean"] >= 0.8 and meta["trainer"] == TRAINER_DIR
    assert (TINY_MODEL / "README.md").is_file()


@pytest.mark.slow
def test_tiny_model_dice_on_unseen_phantoms(nnunet_run) -> None:
    root, res = nnunet_run
    assert res.method == "nnunet" and res.device == "cpu" and len(res.written) == 6
    qc = pd.read_parquet(root / "segmentation_qc.parquet")
    assert len(qc) == 6 and qc["has_expert"].all()
    assert qc["dice"].mean() >= 0.8, qc
    assert qc["hd95_mm"].median() <= 8.0
    assert (qc["mask_volume_mm3"] > 0).all()


@pytest.mark.slow
def test_masks_on_the_image_grid(nnunet_run, tmp_path: Path, rewrite_case) -> None:
    """Same shape, affine and codes as phase 0001, also for grids unlike the training grid: other spacing,
    an oblique affine, a sagittal orientation, and an all-zero image."""
    from etl.segment.io import write_nifti
    from etl.segment.stage import run_segmentation
    from etl.synth.staged import stage_phantoms

    root, _ = nnunet_run
    odd = tmp_path / "odd"
    stage_phantoms(odd, [7101], shape=(56, 60, 20), spacing=(2.3, 1.9, 4.5))
    stage_phantoms(odd, [7102, 7103, 7104])
    rewrite_case(odd, "SYN_7102", "oblique")
    rewrite_case(odd, "SYN_7103", "sagittal")
    layout_b = Layout.from_definition(odd)
    for p in layout_b.images("SYN_7104"):
        img = nib.load(str(p))
        write_nifti(p, np.zeros(img.shape), img, dtype=np.int16)
    res = run_segmentation(odd, method="nnunet", device="cpu")
    assert not res.failed and len(res.written) == 4
    layout_a = Layout.from_definition(root)
    pairs = [(layout_a, c.patient_id) for c in find_cases(layout_a)] + [(layout_b, c.patient_id)
                                                                          for c in find_cases(layout_b)]
    for layout, pid in pairs:
        img = nib.load(str(layout.image(pid, 1)))
        mask = nib.load(str(layout.automatic_mask(pid)))
        assert mask.shape == img.shape
        assert np.array_equal(mask.affine, img.affine)
        assert int(mask.header["qform_code"]) == int(img.header["qform_code"])
        assert int(mask.header["sform_code"]) == int(img.header["sform_code"])
        assert mask.get_data_dtype() == np.uint8
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
        assert nib.aff2axcodes(mask.affine) == nib.aff2axcodes(img.affine)
    assert nib.aff2axcodes(nib.load(str(layout_b.automatic_mask("SYN_7103"))).affine) != ("L", "P", "S")
    qc = res.qc.set_index("patient_id")
    assert qc.loc["SYN_7102", "dice"] >= 0.8  # rotating the affine leaves the voxels, and the prediction, alone
    assert qc.loc["SYN_7104", "mask_volume_mm3"] == 0.0  # nothing in, nothing out, no crash


def test_errors_are_one_line(cli, phantom_staged: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = cli("segment", phantom_staged, "--ftv", "--model", TINY_MODEL)
    assert res.exit_code == 2 and "exclude" in res.stderr  # usage
    res = cli("segment", phantom_staged, "--model", tmp_path)
    assert res.exit_code == 1 and res.stderr.startswith("error: no nnU-Net model") and "Traceback" not in res.stderr
    res = cli("segment", phantom_staged, "--device", "cuda")
    assert res.exit_code == 1 and "CUDA" in res.stderr
    res = cli("segment", tmp_path / "nothing")
    assert res.exit_code == 2 and "no images/" in res.stderr
    import etl.segment.nnunet as nn

    monkeypatch.setattr(nn, "nnunet_available", lambda: False)
    res = cli("segment", phantom_staged)
    assert res.exit_code == 1 and "pip install" in res.stderr and "--ftv" in res.stderr
    assert not Layout.from_definition(phantom_staged).automatic_mask("SYN_7001").exists()


@pytest.mark.slow
def test_killed_run_resumes(phantom_staged: Path, tmp_path: Path) -> None:
    """A real `mamamia segment` killed mid-run leaves only whole masks; the rerun does the rest."""
    from etl.synth.staged import stage_phantoms

    root = tmp_path / "staged"
    shutil.copytree(phantom_staged, root)
    stage_phantoms(root, list(range(7201, 7207)))  # 12 cases in all
    layout = Layout.from_definition(root)
    auto = root / "segmentations" / "automatic"
    # an existing mask is a finished case: kept as is (here an empty one, to check QC of empty masks too)
    from etl.segment.io import write_nifti

    empty_pid = "SYN_7201"
    write_nifti(layout.automatic_mask(empty_pid), np.zeros(nib.load(str(layout.image(empty_pid, 1))).shape, np.uint8),
                nib.load(str(layout.image(empty_pid, 1))))
    before = layout.automatic_mask(empty_pid).read_bytes()

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([str(MAMAMIA), "segment", str(root), "--device", "cpu"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(auto.glob("*.nii.gz"))) >= 3:  # the sentinel + two new masks
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    done_after_kill = len(list(auto.glob("*.nii.gz")))
    assert proc.returncode == -signal.SIGKILL, "run finished before it could be killed"
    assert 3 <= done_after_kill < 12
    for p in auto.glob("*.nii.gz"):  # every mask present is whole
        nib.load(str(p)).get_fdata()
    # and of known origin: every case the run set out to do had its entry before any mask was written
    from etl.segment.bookkeeping import read_methods

    record = read_methods(root)
    assert empty_pid not in record and len(record) == 11
    assert {p.name for p in auto.glob("*.nii.gz")} - {layout.automatic_mask(empty_pid).name} <= \
        {layout.automatic_mask(pid).name for pid in record}
    assert {e["status"] for e in record.values()} <= {"pending", "done"} and "pending" in {e["status"] for e in record.values()}

    out = subprocess.run([str(MAMAMIA), "segment", str(root)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"segmented {12 - done_after_kill} case(s)" in out.stdout
    assert f"{done_after_kill} already done" in out.stdout
    assert len(list(auto.glob("*.nii.gz"))) == 12 and not list(auto.glob(".*"))
    assert not list(root.glob(".segment-work-*"))  # the killed run's work folder is cleared too
    assert layout.automatic_mask(empty_pid).read_bytes() == before
    record = read_methods(root)
    assert empty_pid not in record and {e["status"] for e in record.values()} == {"done"}
    assert all(e["mask_sha256"] == hashlib.sha256(layout.automatic_mask(pid).read_bytes()).hexdigest()
               for pid, e in record.items())
    qc = pd.read_parquet(root / "segmentation_qc.parquet").set_index("patient_id")
    assert len(qc) == 12
    row = qc.loc[empty_pid]
    assert row["dice"] == 0.0 and pd.isna(row["hd95_mm"]) and pd.isna(row["msd_mm"])
    assert row["mask_volume_mm3"] == 0.0 and row["lesion_count"] == 0
    assert qc.drop(index=empty_pid)["dice"].mean() >= 0.8
