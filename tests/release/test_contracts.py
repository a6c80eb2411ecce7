"""One definition renames every folder and the nnU-Net case id: the split, the segment stage's nnU-Net export,
the release (files, Croissant, verify) and the release's nnU-Net export must all follow it (etl/contracts.py,
etl/layout.py), because none of them spells a name of its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.release.release_helpers import AUTO_BOX, CASES, EXPERT_BOX, SHAPE, nifti_gz, v1_rows, write_definition

NAMING = {
    "image": "scans/{PATIENT_ID}/{patient_id}_{phase:04d}.nii.gz",
    "expert_mask": "masks/manual/{PATIENT_ID}.nii.gz",
    "automatic_mask": "masks/model/{PATIENT_ID}.nii.gz",
    "patient_info": "case_info/{PATIENT_ID}.json",
    "imaging_json": "meta/{patient_id}.imaging.json",
}
TEMPLATE = "mm_{PATIENT_ID}_x"


def _case_id(pid: str) -> str:
    return f"mm_{pid.upper()}_x"


@pytest.fixture(scope="module")
def renamed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(definition, staged directory, release) with the renamed folders and case id."""
    from etl.layout import Layout
    from etl.release.build import build_release
    from etl.release.definition import load_definition
    from etl.tables import write_table

    base = tmp_path_factory.mktemp("contracts")
    definition = write_definition(base / "defs" / "renamed.yaml", staged="../staged", table="../table.parquet",
                                  naming=NAMING, split={"seed": 3, "test_fraction": 0.25, "folds": 2,
                                                        "min_stratum": 1, "nnunet_case_id": TEMPLATE})
    staged = base / "staged"
    layout = Layout.from_definition(staged, definition)
    rows = v1_rows(CASES)
    rng = np.random.default_rng(5)
    for _, row in rows.iterrows():
        pid, view = row["patient_id"], row["view"]
        for phase in range(int(row["num_phases"])):
            p = layout.image(pid, phase)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(nifti_gz(rng.integers(0, 800, size=SHAPE, dtype=np.int16), view))
        for p, box in ((layout.expert_mask(pid), EXPERT_BOX), (layout.automatic_mask(pid), AUTO_BOX)):
            mask = np.zeros(SHAPE, np.uint8)
            mask[box] = 1
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(nifti_gz(mask, view))
    write_table(rows, base / "table.parquet")
    release = base / "release"
    build_release(load_definition(definition), release)
    return definition, staged, release


def test_release_uses_the_definition_folders_and_verifies(renamed: tuple[Path, Path, Path]) -> None:
    from etl.release.manifest import read_manifest
    from etl.release.verify import verify_release

    _, _, release = renamed
    tops = {rel.split("/", 1)[0] for rel in read_manifest(release) if "/" in rel}
    assert tops == {"scans", "masks", "case_info"}
    assert all((release / "masks" / kind / f"{pid}.nii.gz").is_file() for pid in CASES for kind in ("manual", "model"))
    assert not any((release / d).exists() for d in ("images", "segmentations", "patient_info_files"))
    assert verify_release(release) == []
    croissant = json.loads((release / "croissant.json").read_text())
    includes = {d["@id"]: d.get("includes") for d in croissant["distribution"] if d["@type"] == "cr:FileSet"}
    assert includes == {"images": "scans/*/*.nii.gz", "expert_segmentations": "masks/manual/*.nii.gz",
                        "automatic_segmentations": "masks/model/*.nii.gz", "patient_info_files": "case_info/*.json"}


def test_a_stray_file_in_a_renamed_folder_is_still_caught(renamed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """verify's case folders come from the layout: a file in masks/ that no row names is reported."""
    import shutil

    from etl.release.manifest import write_manifest
    from etl.release.verify import verify_release

    rel = tmp_path / "rel"
    shutil.copytree(renamed[2], rel)
    (rel / "masks" / "manual" / "NOBODY.nii.gz").write_bytes((rel / "masks" / "manual" / f"{CASES[0]}.nii.gz").read_bytes())
    write_manifest(rel)
    found = [(p.check, p.where) for p in verify_release(rel, phi=False)]
    assert ("files", "masks/manual/NOBODY.nii.gz") in found


def test_split_release_and_exports_agree_on_the_case_id(renamed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from etl.export.nnunet import export_nnunet
    from etl.layout import Layout
    from etl.release.definition import load_definition
    from etl.segment.config import load_config
    from etl.segment.io import find_cases
    from etl.segment.nnunet import export_raw
    from etl.split import make_split
    from etl.use.release import open_release

    definition, staged, release = renamed
    rel = open_release(release)
    train = sorted(rel.table.loc[rel.table["split"] == "train", "patient_id"].astype(str))
    assert len(train) >= 4

    # the release's splits_final.json and the split stage's (same settings, same table) name the same ids
    shipped = json.loads((release / "splits_final.json").read_text())
    ids = sorted(i for fold in shipped for i in fold["val"])
    assert ids == sorted(_case_id(p) for p in train)
    drawn = make_split(rel.table.drop(columns=["split"]), load_definition(definition).split)
    assert drawn.nnunet_splits() == shipped
    assert [rel.nnunet_case_id(p) for p in train] == [_case_id(p) for p in train]

    # the segment stage's nnU-Net training export names its files with the same ids
    cases = find_cases(Layout.from_definition(staged, definition))
    assert sorted(c.patient_id for c in cases) == sorted(CASES)
    chosen = [c for c in cases if c.patient_id in train[:2]]
    raw = export_raw(chosen, tmp_path / "raw", load_config(definition), training=True)
    assert sorted(p.name for p in (raw / "labelsTr").iterdir()) == sorted(f"{_case_id(p)}.nii.gz" for p in train[:2])
    assert sorted(p.name for p in (raw / "imagesTr").iterdir()) == sorted(f"{_case_id(p)}_0000.nii.gz" for p in train[:2])

    # the release's nnU-Net export: labels, images and folds all use the ids of splits_final.json
    res = export_nnunet(rel, tmp_path / "nnunet", 501, phases=(1,), masks="expert", link=False)
    labels = sorted(p.name for p in (res.folder / "labelsTr").iterdir())
    assert labels == sorted(f"{_case_id(p)}.nii.gz" for p in train)
    folds = json.loads((res.folder / "splits_final.json").read_text())
    assert folds == shipped


def test_case_id_template_is_checked() -> None:
    from etl.contracts import check_case_id_template, nnunet_case_id
    from etl.errors import ConfigError

    assert nnunet_case_id("Duke_001") == "duke_001"
    assert nnunet_case_id("Duke_001", "{PATIENT_ID}") == "DUKE_001"
    for bad in ("case", "{patient}", "{patient_id}/x", "{patient_id", " {patient_id}"):
        with pytest.raises(ConfigError):
            check_case_id_template(bad)


def test_imaging_variables_come_from_the_schema() -> None:
    from etl.contracts import imaging_variables
    from etl.validate.schema import load_schema

    names = imaging_variables()
    assert len(names) == 22 and "pixel_spacing" in names and "age" not in names
    assert names == [c.name for c in load_schema().columns.values() if c.group == "imaging"]
