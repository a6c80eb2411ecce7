"""`mamamia clinical build` / `concordance` end to end on synthetic sources in the real layouts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from etl.resources import data_path
from etl.synth.clinical_sources import write_clinical_sources

MAMAMIA = Path(sys.executable).with_name("mamamia")
PICK = ["DUKE_001", "DUKE_002", "DUKE_005", "ISPY1_1001", "ISPY1_1002", "ISPY2_100899", "NACT_01", "NACT_02"]


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    """A small manifest (8 cases of v1) and synthetic sources for its Duke and I-SPY1 cases."""
    root = tmp_path_factory.mktemp("small")
    manifest = pd.read_csv(data_path("manifests/mama-mia-v1.csv"), dtype=str)
    manifest = manifest[manifest.patient_id.isin(PICK)]
    manifest.to_csv(root / "manifest.csv", index=False)
    sources = write_clinical_sources(root / "sources", list(manifest.patient_id), seed=7)
    return root, sources


def _source_args(sources):
    return [a for name, path in sources.items() for a in ("--source", f"{name}={path}")]


@pytest.mark.slow
def test_build_and_concordance_subprocess(small, v1_path, tmp_path, cli):
    root, sources = small
    out = tmp_path / "built.parquet"
    res = subprocess.run([str(MAMAMIA), "clinical", "build", *_source_args(sources), "--base", str(v1_path),
                          "--manifest", str(root / "manifest.csv"), "--out", str(out)],
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    assert "8 rows (DUKE 3, ISPY1 2, ISPY2 1, NACT 2)" in res.stdout
    assert "normalized menopause" in res.stderr or "normalized scanner_model" in res.stderr  # counted in the run log
    from etl.tables import read_table

    table = read_table(out)
    assert table["patient_id"].tolist() == PICK
    lineage = json.loads(out.with_name("built.parquet.lineage.json").read_text())
    assert lineage["variables"]["er"]["DUKE"]["from"][0]["source"] == "duke:Clinical_and_Other_Features.xlsx"
    assert lineage["variables"]["er"]["NACT"]["from"][0]["source"] == "base:clinical_and_imaging_info.xlsx"

    res = cli("clinical", "concordance", out, "--reference", v1_path, "--format", "json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    nact = report["collections"]["NACT"]
    assert nact["rows"] == {"table": 2, "reference": 64, "matched": 2}
    assert all(v["rate"] in (None, 1.0) for v in nact["variables"].values())
    # synthetic sources disagree with v1: the report must say so, by patient
    duke_er = report["collections"]["DUKE"]["variables"]["er"]
    assert duke_er["mapped"] and duke_er["compared"] == 3
    assert duke_er["agreeing"] + duke_er["disagreements"] == 3
    res = cli("clinical", "concordance", out, "--reference", v1_path, "--min-rate", "0.99")
    assert res.exit_code == 1 and "agrees" in res.stderr


def test_build_fails_on_schema_errors_and_writes_nothing(small, tmp_path, cli, edit_workbook):
    root, sources = small
    young = edit_workbook(sources["duke"], tmp_path / "young.xlsx", "Data", 2, "Patient ID",
                          {("Breast_MRI_002", "Date of Birth (Days)"): -3000})  # 8 years old
    out = tmp_path / "t.xlsx"
    res = cli("clinical", "build", "--source", f"duke={young}", "--manifest", root / "manifest.csv", "--out", out)
    assert res.exit_code == 1
    assert "error: built table breaks the schema" in res.stderr and "DUKE_002" in res.stderr and "column age" in res.stderr
    assert not out.exists() and not (tmp_path / "t.xlsx.lineage.json").exists()
    assert list(tmp_path.iterdir()) == [young]


def test_exclusions_imaging_and_precedence(small, tmp_path, cli):
    root, sources = small
    (tmp_path / "excl.csv").write_text("patient_id,reason\nDUKE_005,test exclusion\n")
    imaging = tmp_path / "staged" / "imaging"
    imaging.mkdir(parents=True)
    (imaging / "nact_01.imaging.json").write_text(json.dumps(
        {"num_slices": 77, "pixel_spacing": [0.5, 0.5], "manufacturer": "GE", "age": 50, "unknown_key": 1}))
    (imaging / "duke_001.imaging.json").write_text(json.dumps({"manufacturer": "Philips", "num_slices": 12}))
    out = tmp_path / "t.csv"
    res = cli("clinical", "build", *_source_args(sources), "--imaging", tmp_path / "staged",
              "--manifest", root / "manifest.csv", "--exclusions", tmp_path / "excl.csv", "--out", out)
    assert res.exit_code == 0, res.stderr
    from etl.tables import read_table

    t = read_table(out).set_index("patient_id")
    assert "DUKE_005" not in t.index and len(t) == 7
    assert t.loc["NACT_01", "num_slices"] == 77 and t.loc["NACT_01", "pixel_spacing"] == "[0.5, 0.5]"
    assert t.loc["NACT_01", "age"] == 50  # no base: imaging JSON is next in line
    assert pd.isna(t.loc["NACT_02", "num_slices"])  # nothing anywhere: null
    assert t.loc["DUKE_001", "manufacturer"] != "Philips"  # the Duke source maps manufacturer: source wins
    assert t.loc["DUKE_001", "num_slices"] == 12  # not mapped by Duke: imaging fills it
    lineage = json.loads((tmp_path / "t.csv.lineage.json").read_text())
    assert lineage["excluded"] == {"DUKE_005": "test exclusion"}
    assert lineage["variables"]["num_slices"]["NACT"] == {
        "values": 1, "from": [{"source": "imaging:staged", "rule": "imaging JSON", "values": 1}]}


def test_unknown_source_name_and_bad_source_argument(small, tmp_path, cli):
    root, sources = small
    res = cli("clinical", "build", "--source", f"tcga={sources['duke']}", "--manifest", root / "manifest.csv",
              "--out", tmp_path / "x.csv")
    assert res.exit_code == 1 and "no mapping with a source for 'tcga' (known: duke, ispy1)" in res.stderr
    res = cli("clinical", "build", "--source", "duke", "--out", tmp_path / "x.csv")
    assert res.exit_code == 2 and "expected NAME=PATH" in res.stderr  # usage
    res = cli("clinical", "build", "--source", f"duke={tmp_path / 'missing.xlsx'}", "--manifest", root / "manifest.csv",
              "--out", tmp_path / "x.csv")
    assert res.exit_code == 2 and "source file not found" in res.stderr


def test_xlsx_output_is_the_drop_in_form(small, tmp_path, cli):
    import openpyxl

    root, sources = small
    out = tmp_path / "t.xlsx"
    res = cli("clinical", "build", *_source_args(sources), "--manifest", root / "manifest.csv", "--out", out)
    assert res.exit_code == 0, res.stderr
    book = openpyxl.load_workbook(out, read_only=True)
    assert book.sheetnames == ["dataset_info", "legend"]
