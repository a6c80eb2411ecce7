"""The manifest is generated from the v1 table by the TCIA rules in the mapping files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from etl.errors import ConfigError, ValidationFailed
from etl.resources import data_path
from etl.transform.manifest import manifest_csv, manifest_from_table

MAMAMIA = Path(sys.executable).with_name("mamamia")


@pytest.fixture(scope="session")
def v1_manifest(v1_table, collections):
    return manifest_from_table(v1_table, collections)


def test_committed_manifest_is_what_the_command_generates(v1_manifest):
    assert manifest_csv(v1_manifest) == data_path("manifests/mama-mia-v1.csv").read_text(encoding="utf-8")


def test_tcia_names_follow_the_declared_rules(v1_manifest):
    m = v1_manifest.set_index("patient_id")
    assert len(m) == 1506
    assert m.loc["DUKE_001", ["tcia_collection", "tcia_patient_id"]].tolist() == ["Duke-Breast-Cancer-MRI", "Breast_MRI_001"]
    assert m.loc["ISPY1_1001", ["tcia_collection", "tcia_patient_id"]].tolist() == ["ISPY1", "ISPY1_1001"]
    assert m.loc["ISPY2_100899", ["tcia_collection", "tcia_patient_id"]].tolist() == ["ISPY2", "ISPY2-100899"]
    assert m.loc["NACT_01", ["tcia_collection", "tcia_patient_id"]].tolist() == ["Breast-MRI-NACT-Pilot", "UCSF-BR-01"]
    assert m.groupby("dataset")["tcia_collection"].nunique().eq(1).all()
    assert m["tcia_series_uid"].str.fullmatch(r"[0-9]+(\.[0-9]+)+").all()


def test_a_rule_change_in_yaml_changes_the_manifest(tmp_path, collections):
    from etl.transform.clinical import load_collections

    for path in collections["NACT"].path.parent.glob("*.yaml"):
        text = path.read_text()
        if path.name == "nact.yaml":
            text = text.replace("format: 'UCSF-BR-{n}'", "format: 'UCSF-BR-0{n}'")
        (tmp_path / path.name).write_text(text)
    table = pd.DataFrame({"patient_id": ["NACT_07"], "dataset": ["NACT"], "tcia_series_uid": ["1.2.3"]})
    assert manifest_from_table(table, load_collections(tmp_path))["tcia_patient_id"].tolist() == ["UCSF-BR-007"]


def test_ids_outside_the_rules_fail(collections):
    bad = pd.DataFrame({"patient_id": ["DUKE_0001"], "dataset": ["DUKE"], "tcia_series_uid": ["1.2"]})
    with pytest.raises(ValidationFailed, match=r"does not match the DUKE id rule.*duke.yaml"):
        manifest_from_table(bad, collections)
    unknown = pd.DataFrame({"patient_id": ["TCGA_01"], "dataset": ["TCGA"], "tcia_series_uid": ["1.2"]})
    with pytest.raises(ConfigError, match="no mapping file declares TCIA naming for dataset 'TCGA'"):
        manifest_from_table(unknown, collections)


def test_exclusions_file_is_shipped_with_its_header():
    assert data_path("manifests/exclusions.csv").read_text(encoding="utf-8").splitlines()[0] == "patient_id,reason"


def test_manifest_from_table_cli_subprocess(tmp_path, v1_path):
    out = tmp_path / "m.csv"
    res = subprocess.run([str(MAMAMIA), "manifest", "from-table", str(v1_path), "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "1506 cases (DUKE 291, ISPY1 171, ISPY2 980, NACT 64)" in res.stdout
    assert out.read_text() == data_path("manifests/mama-mia-v1.csv").read_text()
