"""FTV fallback: I-SPY1 PE/SER thresholds find the phantom lesion without any weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from etl.errors import SegmentError
from etl.layout import Layout
from etl.segment.config import FtvSettings, load_config
from etl.segment.ftv import ftv_mask, percent_enhancement, read_box, signal_enhancement_ratio
from etl.segment.metrics import agreement
from etl.synth.phantom import make_phantom


@pytest.mark.parametrize("kwargs", [{}, {"bilateral": False, "fat_suppressed": False, "n_phases": 3},
                                    {"n_phases": 5, "fat_suppressed": False}])
def test_ftv_on_phantoms_dice(kwargs: dict) -> None:
    settings = load_config().ftv
    dices = []
    for seed in range(300, 310):
        ph = make_phantom(seed, **kwargs)
        dices.append(agreement(ftv_mask(ph.phases, ph.spacing, settings), ph.mask, ph.spacing).dice)
    assert np.mean(dices) >= 0.8, dices


def test_thresholds_come_from_the_definition() -> None:
    ph = make_phantom(301)
    strict = FtvSettings(pe_min_percent=1000.0)  # above any enhancement in the phantom
    assert ftv_mask(ph.phases, ph.spacing, strict).sum() == 0
    loose = FtvSettings(pe_min_percent=5.0, keep="all")  # parenchyma enhances 8-20 %: it joins the mask
    assert ftv_mask(ph.phases, ph.spacing, loose).sum() > 3 * ph.mask.sum()
    # wash-out lesion: SER > 1; demanding SER <= 0.5 (persistent enhancement only) removes it
    assert ftv_mask(ph.phases, ph.spacing, FtvSettings(ser_max=0.5)).sum() == 0
    assert ftv_mask(ph.phases, ph.spacing, FtvSettings(ser_min=1.0)).sum() == ph.mask.sum()


def test_pe_and_ser_formulas() -> None:
    pre = np.array([100.0, 0.0, 50.0], np.float32)
    early = np.array([250.0, 10.0, 60.0], np.float32)
    late = np.array([200.0, 5.0, 50.0], np.float32)
    assert percent_enhancement(pre, early).tolist() == [150.0, 0.0, 20.0]
    ser = signal_enhancement_ratio(pre, early, late)
    assert ser[0] == pytest.approx(1.5) and ser[1] == pytest.approx(2.0) and np.isinf(ser[2])


def test_box_restricts_the_search(tmp_path: Path) -> None:
    ph = make_phantom(305)
    idx = np.argwhere(ph.mask)
    box = [[int(idx[:, a].min()), int(idx[:, a].max()) + 1] for a in range(3)]
    info = tmp_path / "p.json"
    info.write_text(json.dumps({"primary_lesion": {"box": box}}))
    sl = read_box(info, "primary_lesion.box", ph.mask.shape, ph.spacing, margin_mm=4.0)
    assert sl is not None and sl[0].start == max(box[0][0] - 2, 0)  # 4 mm margin = 2 voxels of 2 mm
    settings = FtvSettings(keep="all", pe_min_percent=5.0)  # loose: only the box keeps it on the lesion
    got = ftv_mask(ph.phases, ph.spacing, settings, sl)
    outside = np.ones_like(got, bool)
    outside[sl] = False
    assert got[outside].sum() == 0 and (got & ph.mask).sum() == ph.mask.sum()
    assert read_box(info, "missing", ph.mask.shape, ph.spacing) is None
    assert read_box(tmp_path / "none.json", "box", ph.mask.shape, ph.spacing) is None
    info.write_text(json.dumps({"box": [[5, 2], [0, 1], [0, 1]]}))
    with pytest.raises(SegmentError):
        read_box(info, "box", ph.mask.shape, ph.spacing)


def test_too_few_phases_is_an_error() -> None:
    ph = make_phantom(302, n_phases=1)
    with pytest.raises(SegmentError):
        ftv_mask(ph.phases, ph.spacing, FtvSettings())


def test_cli_ftv_uses_definition_and_box(cli, phantom_staged: Path, tmp_path: Path) -> None:
    """Loose thresholds from a custom definition select parenchyma too; the lesion box keeps FTV on the lesion."""
    import pandas as pd
    import yaml

    from etl.resources import data_path
    from etl.segment.io import read_array

    root = tmp_path / "staged"
    shutil.copytree(phantom_staged, root)
    doc = yaml.safe_load(data_path("release/v1.yaml").read_text())
    doc["segmentation"]["ftv"].update(pe_min_percent=30, keep="all", box_margin_mm=0)
    definition = tmp_path / "def.yaml"
    definition.write_text(yaml.safe_dump(doc))
    layout = Layout.from_definition(root)
    boxed = ["SYN_7001", "SYN_7002", "SYN_7003"]
    for pid in boxed:
        idx = np.argwhere(read_array(layout.expert_mask(pid)) > 0)
        box = [[int(idx[:, a].min()), int(idx[:, a].max()) + 1] for a in range(3)]
        layout.patient_info(pid).parent.mkdir(parents=True, exist_ok=True)
        layout.patient_info(pid).write_text(json.dumps({"patient_id": pid, "lesion_box": box}))

    res = cli("segment", root, "--ftv", "--jobs", "2", "--definition", definition)
    assert res.exit_code == 0, res.stderr
    qc = pd.read_parquet(root / "segmentation_qc.parquet").set_index("patient_id")
    assert len(qc) == 6
    assert (qc.loc[boxed, "dice"] >= 0.8).all()  # the box cut the parenchyma away
    unboxed = qc.drop(index=boxed)
    assert (unboxed["dice"] < 0.5).all()  # no box: loose thresholds take in the enhancing parenchyma
    assert (unboxed["lesion_count"] > 1).all()


def test_cli_ftv_default_definition(cli, phantom_staged: Path, tmp_path: Path) -> None:
    import pandas as pd

    root = tmp_path / "staged"
    shutil.copytree(phantom_staged, root)
    res = cli("segment", root, "--ftv")
    assert res.exit_code == 0, res.stderr
    assert "segmented 6 case(s) with FTV" in res.stdout
    qc = pd.read_parquet(root / "segmentation_qc.parquet")
    assert qc["dice"].mean() >= 0.8 and (qc["lesion_count"] == 1).all()


def test_one_bad_case_does_not_stop_the_others(cli, phantom_staged: Path, tmp_path: Path) -> None:
    import pandas as pd

    root = tmp_path / "staged"
    shutil.copytree(phantom_staged, root)
    layout = Layout.from_definition(root)
    bad = layout.image("BAD_0001", 0)
    bad.parent.mkdir(parents=True)
    shutil.copy(layout.image("SYN_7001", 0), bad)  # a pre-contrast phase only: no enhancement to measure
    res = cli("segment", root, "--ftv", "--jobs", "2")
    assert res.exit_code == 1
    assert "1 case(s) failed" in res.stderr and "(BAD_0001)" in res.stderr and "Traceback" not in res.stderr
    assert "segmented 6 case(s)" in res.stdout
    qc = pd.read_parquet(root / "segmentation_qc.parquet")
    assert sorted(qc["patient_id"]) == [f"SYN_{s}" for s in range(7001, 7007)]
    assert not layout.automatic_mask("BAD_0001").exists()


def test_switching_method_redoes_the_masks_the_other_method_made(cli, nnunet_run, tmp_path: Path) -> None:
    """Resume keeps a mask only if this method (and model, folds) made it, or if nobody recorded who did."""
    import json

    import nibabel as nib
    import numpy as np

    from etl.segment.stage import METHODS_FILE

    src, _ = nnunet_run
    root = tmp_path / "staged"
    shutil.copytree(src, root)
    record = json.loads((root / METHODS_FILE).read_text())
    assert len(record) == 6 and all(r["method"] == "nnunet" and r["folds"] == [0] for r in record.values())
    layout = Layout.from_definition(root)
    hand = sorted(record)[0]
    del record[hand]  # a mask of unknown origin (put there by hand): never overwritten
    (root / METHODS_FILE).write_text(json.dumps(record))
    before = np.asanyarray(nib.load(str(layout.automatic_mask(hand))).dataobj).copy()

    res = cli("segment", root, "--ftv")
    assert res.exit_code == 0, res.stderr
    assert "segmented 5 case(s) with FTV (5 redone" in res.stdout and "1 already done" in res.stdout
    after = json.loads((root / METHODS_FILE).read_text())
    assert {pid: r["method"] for pid, r in after.items()} == {pid: "ftv" for pid in record}
    assert np.array_equal(np.asanyarray(nib.load(str(layout.automatic_mask(hand))).dataobj), before)
    res = cli("segment", root, "--ftv")
    assert "segmented 0 case(s) with FTV; 6 already done" in res.stdout
