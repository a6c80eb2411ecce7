"""`mamamia export nnunet | monai`: checked by nnU-Net's own integrity check and MONAI's own datalist readers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def _case_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_nnunet_export_passes_nnunets_own_integrity_check(export_release: Path, tmp_path: Path, cli) -> None:
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    from etl import open_release

    rel = open_release(export_release)
    raw = tmp_path / "nnUNet_raw"
    res = cli("export", "nnunet", export_release, "--dataset-id", "42", "--out", raw, "--phases", "0,1")
    assert res.exit_code == 0, res.stderr
    ds = raw / "Dataset042_MAMAMIA"
    verify_dataset_integrity(str(ds), num_processes=1)  # nnU-Net raises on any problem

    train, test = rel.split("train"), rel.split("test")
    meta = json.loads((ds / "dataset.json").read_text())
    assert meta["numTraining"] == len(train) and meta["file_ending"] == ".nii.gz"
    assert meta["channel_names"] == {"0": "DCE_phase_0000", "1": "DCE_phase_0001"}
    ids = {pid: rel.nnunet_case_id(pid) for pid in rel.table["patient_id"]}
    assert _case_files(ds / "imagesTr") == sorted(f"{ids[p]}_{c:04d}.nii.gz" for p in train["patient_id"] for c in (0, 1))
    assert _case_files(ds / "imagesTs") == sorted(f"{ids[p]}_{c:04d}.nii.gz" for p in test["patient_id"] for c in (0, 1))
    assert _case_files(ds / "labelsTr") == sorted(f"{ids[p]}.nii.gz" for p in train["patient_id"])
    # channel k is phase k of the release, the label its expert mask: the same file (hard link, same fs)
    pid = train["patient_id"].iloc[0]
    for channel, phase in ((0, 0), (1, 1)):
        dst = ds / "imagesTr" / f"{ids[pid]}_{channel:04d}.nii.gz"
        assert os.path.samefile(dst, rel.layout.image(pid, phase))
    assert os.path.samefile(ds / "labelsTr" / f"{ids[pid]}.nii.gz", rel.layout.expert_mask(pid))
    # the folds are the release's own splits_final.json, and rel.split's train/val of each fold
    folds = json.loads((ds / "splits_final.json").read_text())
    assert folds == json.loads((export_release / "splits_final.json").read_text())
    for k, fold in enumerate(folds):
        assert fold["val"] == sorted(ids[p] for p in rel.split("val", fold=k)["patient_id"])
        assert fold["train"] == sorted(ids[p] for p in rel.split("train", fold=k)["patient_id"])
    assert "2 copied" not in res.stdout and f"{3 * len(train) + 2 * len(test)} files hard-linked" in res.stdout


def test_nnunet_export_leaves_out_a_case_without_expert_mask(export_release_copy: Path, tmp_path: Path, cli) -> None:
    from etl import open_release

    rel = open_release(export_release_copy)
    train = rel.split("train")
    pid = train["patient_id"].iloc[0]
    case_id = rel.nnunet_case_id(pid)
    rel.layout.expert_mask(pid).unlink()

    res = cli("export", "nnunet", export_release_copy, "-d", "5", "--out", tmp_path / "a", "--copy")
    assert res.exit_code == 0, res.stderr
    assert f"left out 1 case(s): {pid} (no expert mask)" in res.stderr
    ds = tmp_path / "a" / "Dataset005_MAMAMIA"
    assert json.loads((ds / "dataset.json").read_text())["numTraining"] == len(train) - 1
    assert not (ds / "labelsTr" / f"{case_id}.nii.gz").exists()
    assert all(case_id not in f["train"] + f["val"] for f in json.loads((ds / "splits_final.json").read_text()))
    assert json.loads((ds / "mamamia_export.json").read_text())["left_out"] == {pid: "no expert mask"}
    assert all(p.stat().st_nlink == 1 for p in (ds / "imagesTr").iterdir())  # --copy: files of its own

    res = cli("export", "nnunet", export_release_copy, "-d", "6", "--out", tmp_path / "b", "--masks", "any")
    assert res.exit_code == 0 and "left out" not in res.stderr
    ds = tmp_path / "b" / "Dataset006_MAMAMIA"
    assert os.path.samefile(ds / "labelsTr" / f"{case_id}.nii.gz", rel.layout.automatic_mask(pid))
    assert json.loads((ds / "mamamia_export.json").read_text())["label_kinds"] == {"expert": len(train) - 1,
                                                                                    "automatic": 1}


@pytest.mark.parametrize("case", ["id_clash", "bad_phases", "phase_absent", "bad_masks", "no_release", "bad_id"])
def test_nnunet_export_refusals_are_one_line_exit_2(case: str, export_release: Path, tmp_path: Path, cli) -> None:
    raw = tmp_path / "raw"
    (raw / "Dataset009_OTHER").mkdir(parents=True)
    args = {
        "id_clash": [export_release, "-d", "9"],
        "bad_phases": [export_release, "-d", "1", "--phases", "0,x"],
        "phase_absent": [export_release, "-d", "1", "--phases", "0,40"],
        "bad_masks": [export_release, "-d", "1", "--masks", "manual"],
        "no_release": [tmp_path / "nope", "-d", "1"],
        "bad_id": [export_release, "-d", "1000"],
    }[case]
    res = cli("export", "nnunet", *args, "--out", raw)
    assert res.exit_code == 2, res.stderr
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset009_OTHER"]  # nothing written


def test_monai_datalist_reads_with_monais_own_readers(export_release: Path, tmp_path: Path, cli) -> None:
    from monai.auto3dseg.utils import datafold_read
    from monai.data import load_decathlon_datalist

    from etl import open_release

    rel = open_release(export_release)
    out = tmp_path / "datalist.json"
    res = cli("export", "monai", export_release, "--out", out, "--phases", "0,1")
    assert res.exit_code == 0, res.stderr
    training = load_decathlon_datalist(str(out), is_segmentation=True, data_list_key="training")
    testing = load_decathlon_datalist(str(out), is_segmentation=False, data_list_key="testing")
    assert sorted(e["patient_id"] for e in training) == sorted(rel.split("train")["patient_id"])
    assert sorted(e["patient_id"] for e in testing) == sorted(rel.split("test")["patient_id"])
    for e in training:
        assert e["image"] == [str(rel.layout.image(e["patient_id"], p)) for p in (0, 1)]
        assert e["label"] == str(rel.layout.expert_mask(e["patient_id"])) and e["label_kind"] == "expert"
    for k in (0, 1):  # MONAI's own fold reader gives the release's train/val of fold k
        tr, va = datafold_read(str(out), basedir="", fold=k)
        assert sorted(e["patient_id"] for e in va) == sorted(rel.split("val", fold=k)["patient_id"])
        assert sorted(e["patient_id"] for e in tr) == sorted(rel.split("train", fold=k)["patient_id"])

    res = cli("export", "monai", export_release, "--out", out, "--val-fold", "1")
    doc = json.loads(out.read_text())
    assert sorted(e["patient_id"] for e in doc["validation"]) == sorted(rel.split("val", fold=1)["patient_id"])
    assert sorted(e["patient_id"] for e in doc["training"]) == sorted(rel.split("train", fold=1)["patient_id"])
    assert all(isinstance(e["image"], str) and e["image"].endswith("_0001.nii.gz") for e in doc["training"])


def test_load_case_matches_the_exported_channels(export_release: Path) -> None:
    import nibabel as nib
    import numpy as np

    from etl import open_release

    rel = open_release(export_release)
    pid = rel.split("test")["patient_id"].iloc[0]
    case = rel.load_case(pid, phases=[1, 0])
    assert case.phases == (1, 0)
    assert np.array_equal(case.image[..., 0], np.asanyarray(nib.load(str(rel.layout.image(pid, 1))).dataobj))
    assert np.array_equal(case.mask, np.asanyarray(nib.load(str(rel.layout.expert_mask(pid))).dataobj))
