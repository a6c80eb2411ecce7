"""`mamamia demo` end to end, as the README's main command runs it (a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "mamamia-demo"
    proc = subprocess.run([sys.executable, "-m", "etl", "demo", "--out", str(out)], capture_output=True, text=True,
                          timeout=600)
    return out, proc


def test_demo_exits_zero_and_prints_the_release(demo_run):
    out, proc = demo_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last == f"release: {out.resolve() / 'release'}"
    assert "9 cases (DUKE 3, ISPY1 2, ISPY2 2, NACT 2)" in proc.stdout
    done = [ln for ln in proc.stderr.splitlines() if ln.startswith("[demo]") and ": done in " in ln]
    names = [ln.split("] ", 1)[1].split(":", 1)[0] for ln in done]
    # the demo is `mamamia rebuild` (every stage of the definition, one line each with its time) + the review loop
    for stage in ("extract-tcia", "extract-synapse", "cache-export", "expert-masks", "convert", "clinical", "split",
                  "segment", "release", "verify", "review prepare (views for the rating app)"):
        assert stage in names, (stage, names)
    assert any(ln.startswith("[demo] review: 2 raters") for ln in done)
    # the second rebuild pass skips what the review loop did not change, and reruns what it did
    skipped = {ln.split("] ", 1)[1].split(":", 1)[0] for ln in proc.stderr.splitlines() if ln.endswith("up to date, skipped")}
    assert {"extract-tcia", "extract-synapse", "cache-export", "convert", "clinical", "split"} <= skipped, skipped
    assert "split: 7 train / 2 test" in proc.stdout and "release verifies" in proc.stdout


def test_demo_release_verifies_and_has_every_stage_output(demo_run, cli):
    out, proc = demo_run
    release = out / "release"
    assert cli("validate", release).exit_code == 0
    table = pd.read_parquet(release / "clinical_and_imaging_info.parquet")
    assert sorted(table["dataset"].unique()) == ["DUKE", "ISPY1", "ISPY2", "NACT"]
    # imaging variables come from the DICOM headers the corpus wrote
    manifest = pd.read_csv(out / "work" / "manifest.csv")
    assert table["tcia_series_uid"].tolist() == manifest["tcia_series_uid"].tolist()
    assert set(table["view"]) == {"axial", "sagittal"}
    assert set(table["manufacturer"]) == {"GE", "Philips", "SIEMENS"}
    # every case has its phases, an automatic and an expert mask
    for pid, n in zip(table["patient_id"], table["num_phases"]):
        pl = pid.lower()
        assert len(list((release / "images" / pid).glob(f"{pl}_*.nii.gz"))) == n
        assert (release / "segmentations" / "automatic" / f"{pl}.nii.gz").exists()
        assert (release / "segmentations" / "expert" / f"{pl}.nii.gz").exists()
    qc = pd.read_parquet(release / "segmentation_qc.parquet")
    assert len(qc) == 9 and qc["dice"].min() > 0.6, qc
    splits = pd.read_csv(release / "train_test_splits.csv")
    assert set(splits["split"]) == {"train", "test"}
    # the build reproduced the split stage's own output
    assert (release / "train_test_splits.csv").read_text() == (out / "work" / "splits" / "train_test_splits.csv").read_text()
    # the verify stage searched the release for the source DICOM's identifying values
    log = (out / "demo.log").read_text()
    assert f"release verify {release.resolve()} --phi-from-dicom" in log
    prov = json.loads((release / "provenance.json").read_text())
    assert prov  # tool version, inputs, ledger


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path, cli):
    (tmp_path / "precious.txt").write_text("keep me")
    res = cli("demo", "--out", tmp_path)
    assert res.exit_code == 1
    assert "not an earlier demo" in res.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


_BLOCK_NNUNET = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "nnunetv2"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
from etl.cli import run
sys.exit(run(["demo", "--out", sys.argv[1]]))
"""


def test_demo_falls_back_to_ftv_without_nnunet(tmp_path):
    out = tmp_path / "demo-ftv"
    proc = subprocess.run([sys.executable, "-c", _BLOCK_NNUNET, str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "masks come from the declared FTV fallback" in proc.stderr
    assert "[demo] segment: done in" in proc.stderr
    assert "automatic (FTV (" in proc.stdout
    release = out / "release"
    assert len(list((release / "segmentations" / "automatic").glob("*.nii.gz"))) == 9
    assert proc.stdout.strip().splitlines()[-1] == f"release: {release.resolve()}"


def test_a_broken_nnunet_install_falls_back_to_ftv_with_the_reason(monkeypatch) -> None:
    """Found by the import system but failing to import (a torch build that does not load) is FTV too."""
    import etl.segment.nnunet as nn
    from etl.rebuild.spec import nnunet_unusable

    assert nnunet_unusable() is None  # the segment extra is installed here and imports
    with monkeypatch.context() as m:
        m.setattr(nn, "nnunet_available", lambda: False)
        assert nnunet_unusable() == "not installed"
    monkeypatch.setitem(sys.modules, "nnunetv2.inference.predict_from_raw_data", None)  # import now fails
    why = nnunet_unusable()
    assert why is not None and why.startswith("ModuleNotFoundError") and "predict_from_raw_data" in why


def test_demo_review_loop_is_in_the_release(demo_run):
    """Two raters through the app, three experts, corrections imported: all of it released."""
    out, proc = demo_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Cohen's kappa" in proc.stderr and "9 cases corrected by 3 experts" in proc.stderr
    release = out / "release"
    q = pd.read_csv(release / "segmentation_quality.csv", dtype=str, keep_default_na=False)
    assert len(q) == 18 and set(q["rater"]) == {"rater_1", "rater_2"}
    corr = pd.read_parquet(release / "segmentations" / "corrections.parquet")
    assert len(corr) == 9 and set(corr["expert"]) == {"expert_1", "expert_2", "expert_3"}
    assert corr["dice"].between(0, 1).all() and corr["quality"].notna().all()
    figures = sorted(p.name for p in (out / "figures").rglob("*.png"))
    assert "agreement_by_quality.png" in figures and len(figures) == 2 + 9
