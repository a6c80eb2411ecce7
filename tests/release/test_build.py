"""Release build: layout, contents, reproducibility, sources from the CLI, refusal on missing images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.release.release_helpers import AUTO_BOX, EXPERT_BOX, SPACING, make_staged, write_definition

MAMAMIA = [str(Path(sys.executable).parent / "mamamia")]


def _run(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*MAMAMIA, *map(str, args)], capture_output=True, text=True, timeout=120, env=env)


def test_layout_and_contents(release_dir: Path, staged) -> None:
    from etl.release.tableio import read_table

    for name in ("clinical_and_imaging_info.parquet", "clinical_and_imaging_info.xlsx", "train_test_splits.csv",
                 "segmentation_qc.parquet", "data_dictionary.md", "croissant.json", "provenance.json",
                 "LICENSES.md", "CHANGELOG.md", "SHA256SUMS", "splits_final.json"):
        assert (release_dir / name).is_file(), name
    df = read_table(release_dir / "clinical_and_imaging_info.parquet")
    assert list(df["patient_id"]) == sorted(staged.ids)
    assert set(df["split"]) <= {"train", "test"}
    assert df["age"].dtype == "Int64" and df["pcr"].dtype == "Int64"
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(release_dir / "clinical_and_imaging_info.parquet")
    assert pa.types.is_list(schema.field("acquisition_times").type)
    assert schema.field("acquisition_times").type.value_type == pa.int64()
    assert schema.names[-1] == "split"
    xl = pd.ExcelFile(release_dir / "clinical_and_imaging_info.xlsx")
    assert xl.sheet_names == ["dataset_info", "legend"]
    assert "split" not in pd.read_excel(xl, "dataset_info").columns
    # images copied byte for byte, phase count = num_phases
    for pid, n in zip(df["patient_id"], df["num_phases"]):
        for phase in range(int(n)):
            rel = f"images/{pid}/{pid.lower()}_{phase:04d}.nii.gz"
            assert (release_dir / rel).read_bytes() == (staged.root / rel).read_bytes()
        assert not (release_dir / f"images/{pid}/{pid.lower()}_{int(n):04d}.nii.gz").exists()
    # patient info: bounding box of the expert mask, inclusive voxel bounds
    info = json.loads((release_dir / "patient_info_files" / "duke_001.json").read_text())
    box = info["primary_lesion"]["bounding_box"]
    assert (box["x_min"], box["x_max"]) == (EXPERT_BOX[0].start, EXPERT_BOX[0].stop - 1)
    assert (box["z_min"], box["z_max"]) == (EXPERT_BOX[2].start, EXPERT_BOX[2].stop - 1)
    assert info["primary_lesion"]["mask"] == "expert"
    assert info["image"]["orientation"] == "LPS"
    assert info["imaging_data"]["acquisition_times"] == [0, 584, 714, 846, 977]
    assert json.loads((release_dir / "patient_info_files" / "ispy1_1001.json").read_text())["image"]["orientation"] == "RAS"
    # QC: automatic mask is the expert box shifted by one voxel along x
    qc = pd.read_parquet(release_dir / "segmentation_qc.parquet")
    assert qc["patient_id"].is_unique
    auto = qc[qc["patient_id"] == "DUKE_001"].iloc[0]
    n = np.prod([s.stop - s.start for s in EXPERT_BOX])
    overlap = np.prod([min(a.stop, b.stop) - max(a.start, b.start) for a, b in zip(EXPERT_BOX, AUTO_BOX)])
    assert auto["dice"] == pytest.approx(2 * overlap / (2 * n))
    assert auto["hd95_mm"] == pytest.approx(SPACING[0])
    assert auto["mask_volume_mm3"] == pytest.approx(n * np.prod(SPACING), rel=1e-6)
    assert int(auto["lesion_count"]) == 1 and bool(auto["has_expert"])
    assert auto["expert_volume_mm3"] == pytest.approx(n * np.prod(SPACING), rel=1e-6)
    # cases without masks have no QC rows and no mask files
    no_mask = sorted(set(df["patient_id"]) - set(qc["patient_id"]))
    assert no_mask and not (release_dir / f"segmentations/expert/{no_mask[0].lower()}.nii.gz").exists()
    # data card files
    licences = (release_dir / "LICENSES.md").read_text()
    for text in ("Duke-Breast-Cancer-MRI", "CC BY-NC 4.0", "Breast-MRI-NACT-Pilot", "CC BY 3.0", "ISPY2", "CC BY 4.0"):
        assert text in licences
    dictionary = (release_dir / "data_dictionary.md").read_text()
    assert dictionary.count("\n| ") >= 49 and "`acquisition_times`" in dictionary and "list<int64>" in dictionary
    prov = json.loads((release_dir / "provenance.json").read_text())
    assert prov["inputs"]["table"]["sha256"] == __import__("hashlib").sha256(staged.table.read_bytes()).hexdigest()
    assert prov["outputs"]["images"] == int(df["num_phases"].sum())
    # inputs by name (outside the definition's folder) and sha256, never by an absolute path of this machine
    assert prov["definition"]["sources"]["staged"] == ["staged"]
    assert prov["inputs"]["table"]["path"] == "table.parquet" and prov["definition_file"]["path"] == "test.yaml"
    assert "date" not in json.dumps(prov["tool"]).lower()


def test_croissant_loads_with_mlcroissant(release_dir: Path, mlcroissant) -> None:
    ds = mlcroissant.Dataset(jsonld=str(release_dir / "croissant.json"))
    records = list(ds.records("train_test_splits"))
    assert len(records) == 8
    table = list(ds.records("clinical_and_imaging_info"))
    ids = sorted(r["clinical_and_imaging_info/patient_id"].decode() for r in table)
    assert ids == sorted(pd.read_csv(release_dir / "train_test_splits.csv")["patient_id"])


def test_rebuild_is_byte_identical(staged, release_dir: Path, tmp_path: Path) -> None:
    from etl.release.build import build_release
    from etl.release.definition import load_definition

    again = tmp_path / "elsewhere" / "again"
    build_release(load_definition(staged.definition), again)
    assert (again / "SHA256SUMS").read_bytes() == (release_dir / "SHA256SUMS").read_bytes()
    assert (again / "SHA256SUMS").read_text().count("\n") == sum(1 for p in again.rglob("*") if p.is_file()) - 1


@pytest.mark.slow
def test_cli_end_to_end_subprocess_with_overrides(staged, tmp_path: Path) -> None:
    """Real `mamamia` processes: build with --staged/--table (definition has unset sources), then verify."""
    definition = write_definition(tmp_path / "d.yaml", staged="${MAMAMIA_TEST_UNSET}/staged", table="nowhere.parquet")
    env = {k: v for k, v in os.environ.items() if k != "MAMAMIA_TEST_UNSET"}
    res = _run("release", "build", definition, "--out", tmp_path / "r", env=env)
    assert res.returncode == 1 and "MAMAMIA_TEST_UNSET" in res.stderr and "Traceback" not in res.stderr
    res = _run("release", "build", definition, "--out", tmp_path / "r", "--staged", staged.root, "--table", staged.table, env=env)
    assert res.returncode == 0, res.stderr
    assert "8 cases" in res.stdout and str(tmp_path / "r") in res.stdout
    res = _run("release", "verify", tmp_path / "r", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "release verifies" in res.stdout


def test_missing_images_refuse_build_or_are_left_out(cli, tmp_path: Path) -> None:
    s = make_staged(tmp_path, ids=["DUKE_001", "DUKE_002", "NACT_01"], masks=False)
    # NACT_01 loses its last phase, DUKE_002 all of them
    for p in (s.root / "images" / "DUKE_002").iterdir():
        p.unlink()
    (s.root / "images" / "DUKE_002").rmdir()
    sorted((s.root / "images" / "NACT_01").iterdir())[-1].unlink()
    out = tmp_path / "rel"
    res = cli("release", "build", s.definition, "--out", out)
    assert res.exit_code == 1
    assert "2 case(s) cannot be released" in res.stderr
    assert "DUKE_002: no staged images" in res.stderr and "NACT_01: 2 phase file(s) staged but num_phases is 3" in res.stderr
    assert not out.exists() and not out.with_name("rel.partial").exists()
    # --only-staged leaves DUKE_002 out, NACT_01 still refused (it is staged but incomplete)
    res = cli("release", "build", s.definition, "--out", out, "--only-staged")
    error = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.exit_code == 1 and len(error) == 1
    assert "1 case(s) cannot be released: NACT_01" in error[0] and "DUKE_002" not in error[0]


def test_only_staged_and_imaging_json_override(cli, tmp_path: Path) -> None:
    s = make_staged(tmp_path, ids=["DUKE_001", "DUKE_002", "ISPY2_100899"], masks=False)
    for p in (s.root / "images" / "DUKE_002").iterdir():
        p.unlink()
    # the converter measured a different manufacturer spelling for one case: staged values win, counted
    j = s.root / "imaging" / "duke_001.imaging.json"
    doc = json.loads(j.read_text())
    doc["manufacturer"] = "GE"
    j.write_text(json.dumps(doc))
    # staged per-case facts (an annotated lesion box) are carried into the released patient info
    info = s.root / "patient_info_files" / "duke_001.json"
    info.parent.mkdir()
    info.write_text(json.dumps({"lesion_box": [[1, 5], [2, 6], [0, 3]],
                                "primary_lesion": {"breast_coordinates": {"x_min": 0}, "mask": "stale"}}))
    # a staged case the table does not know is not released, but reported
    stray = s.root / "images" / "DUKE_999"
    stray.mkdir()
    (stray / "duke_999_0000.nii.gz").write_bytes((s.root / "images/DUKE_001/duke_001_0000.nii.gz").read_bytes())
    out = tmp_path / "rel"
    # two cases are left: five folds cannot be filled, and the build says so instead of writing empty folds
    res = cli("release", "build", s.definition, "--out", out, "--only-staged")
    assert res.exit_code == 1 and "5 cross-validation folds need at least 5 training cases" in res.stderr
    assert "Traceback" not in res.stderr and not out.exists()
    write_definition(s.definition, staged="../staged", table="../table.parquet",
                     split={"seed": 42, "test_fraction": 0.2, "folds": 2})
    res = cli("release", "build", s.definition, "--out", out, "--only-staged")
    assert res.exit_code == 0, res.stderr
    assert "left out 1 table row" in res.stdout and "manufacturer 1" in res.stdout
    assert "1 staged case folder(s) have no table row" in res.stderr
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["cases"]["left_out_without_images"] == ["DUKE_002"]
    assert prov["cases"]["staged_without_table_row"] == ["DUKE_999"]
    assert not (out / "images" / "DUKE_999").exists()
    released = json.loads((out / "patient_info_files" / "duke_001.json").read_text())
    assert released["lesion_box"] == [[1, 5], [2, 6], [0, 3]]
    assert released["primary_lesion"]["breast_coordinates"] == {"x_min": 0}
    assert released["primary_lesion"]["mask"] is None  # computed value (no mask staged) wins
    assert prov["outputs"]["patient_info_merged_from_staged"] == 1
    assert prov["imaging_overrides_from_staged"] == {"manufacturer": 1}
    from etl.use.release import open_release

    rel = open_release(out)
    assert list(rel.table["patient_id"]) == ["DUKE_001", "ISPY2_100899"]
    assert rel.table.set_index("patient_id").at["DUKE_001", "manufacturer"] == "GE"
    assert not (out / "segmentation_qc.parquet").exists()  # no masks, no QC table


def test_schema_errors_stop_the_build_before_copying(cli, tmp_path: Path) -> None:
    from etl.tables import read_table, write_table

    s = make_staged(tmp_path, ids=["DUKE_001", "NACT_01"], masks=False)
    df = read_table(s.table)
    df.loc[df["patient_id"] == "NACT_01", "her2"] = 3
    write_table(df, s.table)
    res = cli("release", "build", s.definition, "--out", tmp_path / "rel")
    assert res.exit_code == 1 and "table breaks the schema" in res.stderr and "column her2" in res.stderr
    assert not (tmp_path / "rel").exists() and not (tmp_path / "rel.partial").exists()


def test_fixed_split_file_is_reproduced(staged, tmp_path: Path) -> None:
    from etl.release.build import build_release
    from etl.release.definition import load_definition

    ids = sorted(staged.ids)
    rows = ["patient_id,split,fold"] + [f"{pid},{'test' if i < 3 else 'train'},{'' if i < 3 else i % 5}" for i, pid in enumerate(ids)]
    (tmp_path / "official.csv").write_text("\n".join(rows) + "\n")
    d = write_definition(tmp_path / "d.yaml", staged=str(staged.root), table=str(staged.table),
                         split={"seed": 1, "test_fraction": 0.2, "folds": 5, "file": "official.csv"})
    out = tmp_path / "rel"
    build_release(load_definition(d), out)
    assert (out / "train_test_splits.csv").read_text() == (tmp_path / "official.csv").read_text()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["split"]["file"]["path"] == "official.csv"  # relative to the definition, which sits beside it
    # a split file that misses a case is refused
    (tmp_path / "official.csv").write_text("\n".join(rows[:-1]) + "\n")
    from etl.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="no assignment"):
        build_release(load_definition(d), tmp_path / "rel2")


def test_excluded_case_never_ships_and_is_recorded(cli, tmp_path: Path) -> None:
    """manifests/exclusions.csv is applied by every stage; the release is the last gate even when the table
    was built before the exclusion was added (here: the definition's sources.exclusions)."""
    import yaml

    s = make_staged(tmp_path, ids=["DUKE_001", "DUKE_002", "NACT_01"], masks=False)
    excl = tmp_path / "exclusions.csv"
    excl.write_text("patient_id,reason\nDUKE_002,consent withdrawn\nDUKE_999,typo case\n")
    doc = yaml.safe_load(s.definition.read_text())
    doc.setdefault("sources", {})["exclusions"] = str(excl)
    doc["split"] = dict(doc.get("split") or {}, folds=2)
    s.definition.write_text(yaml.safe_dump(doc))
    out = tmp_path / "rel"
    res = cli("release", "build", s.definition, "--out", out)
    assert res.exit_code == 0, res.stderr
    import pandas as pd

    table = pd.read_parquet(out / "clinical_and_imaging_info.parquet")
    assert list(table["patient_id"]) == ["DUKE_001", "NACT_01"]
    assert not (out / "images" / "DUKE_002").exists()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["cases"]["excluded"] == {"DUKE_002": "consent withdrawn"}
    assert cli("release", "verify", out).exit_code == 0
    doc["sources"]["exclusions"] = str(tmp_path / "missing.csv")
    s.definition.write_text(yaml.safe_dump(doc))
    res = cli("release", "build", s.definition, "--out", tmp_path / "rel2")
    assert res.exit_code != 0 and "exclusions file not found" in res.stderr
