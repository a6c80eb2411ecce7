"""The real Duke and I-SPY1 spreadsheets: concordance with v1, edits that must show up, faults that must be named."""

from __future__ import annotations

import pandas as pd
import pytest

from etl.errors import InputUnreadable, ValidationFailed
from etl.transform.concordance import concordance
from etl.transform.table import build_table
from tests.clinical.conftest import _read_cells
from tests.conftest import DUKE_SOURCE, REPO, V1_TABLE

pytestmark = pytest.mark.filterwarnings("ignore:Unknown extension is not supported:UserWarning")

DUKE_SHEET, DUKE_NAME_ROW, DUKE_ID = "Data", 2, "Patient ID"
ER, PR, BIRTH, PCR_DUKE = "ER", "PR", "Date of Birth (Days)", "Pathologic Response to Neoadjuvant Therapy"


def _expected_echo_time_disagreement() -> dict[str, object]:
    """DUKE_071's echo-time disagreement as the three inputs state it, read without the code under test.

    The table value is the source sheet's cell (openpyxl), the reference is the v1 spreadsheet's cell
    (pandas), and ``known`` is the reason the mapping file gives for it (plain YAML): the concordance
    report must carry exactly these, so a rule, reader or matching change that moves any of them fails here.
    """
    import yaml

    source = _read_cells(DUKE_SOURCE, DUKE_SHEET, DUKE_NAME_ROW, DUKE_ID, ["TE (Echo Time)"])
    v1 = pd.read_excel(V1_TABLE, sheet_name="dataset_info")
    reference = v1.loc[v1["patient_id"] == "DUKE_071", "echo_time"]
    listed = yaml.safe_load((REPO / "mappings" / "duke.yaml").read_text())["known_discrepancies"]
    reasons = [k["reason"] for k in listed if (k["variable"], k["patient_id"]) == ("echo_time", "DUKE_071")]
    assert len(reference) == 1 and len(reasons) == 1
    expected = {"patient_id": "DUKE_071", "table": source["Breast_MRI_071"]["TE (Echo Time)"],
                "reference": float(reference.item()), "known": reasons[0].strip()}
    # the values docs/clinical.md quotes: a changed test-data file shows up here, not as a silent new expectation
    assert (expected["table"], expected["reference"]) == (2.312, 2.32)
    return expected


@pytest.fixture(scope="session")
def report(real_build, v1_table, collections, normalizer):
    return concordance(real_build.table, v1_table, collections, normalizer)


def test_build_has_every_manifest_case_in_order(real_build, manifest_cases):
    table = real_build.table
    assert table["patient_id"].tolist() == [c.patient_id for c in manifest_cases]
    assert table["dataset"].value_counts().to_dict() == {"ISPY2": 980, "DUKE": 291, "ISPY1": 171, "NACT": 64}


def test_every_source_mapped_variable_agrees_at_least_99_percent(report, collections):
    rates = {(ds, name): rate for ds, name, rate in report.lowest_mapped()}
    assert {ds for ds, _ in rates} == {"DUKE", "ISPY1"}
    assert len([k for k in rates if k[0] == "DUKE"]) == len(collections["DUKE"].rules) == 26
    assert len([k for k in rates if k[0] == "ISPY1"]) == len(collections["ISPY1"].rules) == 12
    low = {k: r for k, r in rates.items() if r < 0.99}
    assert not low, low


def test_concordance_numbers_on_the_real_data(report):
    duke = report.collections["DUKE"].variables
    ispy1 = report.collections["ISPY1"].variables
    # measured values (docs/clinical.md): a changed rule or source would move them
    assert (duke["age"].compared, duke["age"].agreeing) == (291, 291)
    assert (duke["pcr"].compared, duke["pcr"].agreeing) == (280, 280)
    assert (duke["days_to_follow_up"].compared, duke["days_to_follow_up"].only_table, duke["days_to_follow_up"].only_reference) == (282, 0, 0)
    assert (duke["echo_time"].compared, duke["echo_time"].agreeing) == (291, 290)
    assert duke["echo_time"].disagreements == [_expected_echo_time_disagreement()]
    assert (duke["tumor_subtype"].agreeing, duke["tumor_subtype"].only_table) == (288, 3)
    assert (ispy1["days_to_recurrence"].compared, ispy1["days_to_recurrence"].agreeing) == (168, 168)
    assert (ispy1["her2"].compared, ispy1["her2"].agreeing) == (166, 166)
    assert (ispy1["ethnicity"].compared, ispy1["ethnicity"].agreeing) == (169, 169)


def test_every_remaining_disagreement_is_a_known_discrepancy(report, collections):
    listed = {
        (ds, k["variable"], k["patient_id"]) for ds, m in collections.items() for k in m.known_discrepancies
    }
    found = set()
    for ds, c in report.collections.items():
        for name, v in c.variables.items():
            if not v.mapped:
                continue
            assert v.n_disagreements == len(v.disagreements)  # all of them are listed in the report
            for d in v.disagreements:
                assert "known" in d and d["known"], (ds, name, d)
                found.add((ds, name, d["patient_id"]))
    # and the mapping files list nothing that is not (or no longer) a disagreement or a one-sided value
    one_sided = {("DUKE", "tumor_subtype", p) for p in ("DUKE_045", "DUKE_435", "DUKE_666")}
    assert listed == found | one_sided


def test_carried_forward_collections_equal_the_normalized_base(report):
    for ds in ("ISPY2", "NACT"):
        for name, v in report.collections[ds].variables.items():
            assert v.agreeing == v.compared and not v.only_table and not v.only_reference, (ds, name)


def _diff(a: pd.DataFrame, b: pd.DataFrame) -> dict[tuple[str, str], tuple[object, object]]:
    out = {}
    for col in a.columns:
        for pid, x, y in zip(a["patient_id"], a[col], b[col]):
            if pd.isna(x) and pd.isna(y):
                continue
            if pd.isna(x) or pd.isna(y) or x != y:
                out[(pid, col)] = (x, y)
    return out


@pytest.mark.slow
def test_edited_sources_change_the_table_exactly_there(tmp_path, edit_workbook, read_cells, real_paths, real_build, manifest_cases, collections, normalizer):
    duke = read_cells(real_paths["duke"], DUKE_SHEET, DUKE_NAME_ROW, DUKE_ID, [ER, PR, BIRTH, PCR_DUKE])
    in_table = {c.patient_id for c in manifest_cases}
    er_case = next(k for k, v in duke.items() if f"DUKE_{k[-3:]}" in in_table and v[ER] == 0 and v[PR] == 1)
    pcr_case = next(k for k, v in duke.items() if f"DUKE_{k[-3:]}" in in_table and v[PCR_DUKE] == 2)
    birth = duke["Breast_MRI_001"][BIRTH]  # -15209 days: 41 years of 365 days
    duke_copy = edit_workbook(
        real_paths["duke"], tmp_path / "duke.xlsx", DUKE_SHEET, DUKE_NAME_ROW, DUKE_ID,
        {("Breast_MRI_001", BIRTH): birth - 5 * 365, (er_case, ER): 1, (pcr_case, PCR_DUKE): 1},
    )
    ispy = read_cells(real_paths["ispy1"], "predictors", 1, "SUBJECTID", ["ERpos", "PgRpos"])
    ispy_er = next(k for k, v in ispy.items() if f"ISPY1_{k}" in in_table and v["ERpos"] == 0 and v["PgRpos"] == 1)
    ispy_copy = edit_workbook(real_paths["ispy1"], tmp_path / "ispy1.xlsx", "predictors", 1, "SUBJECTID",
                              {(ispy_er, "ERpos"): 1})
    edit_workbook(ispy_copy, ispy_copy, "outcomes", 1, "SUBJECTID", {(1001, "PCR"): 1})

    edited = build_table(manifest_cases, {"duke": duke_copy, "ispy1": ispy_copy}, base=real_paths["base"],
                         mappings=collections, normalizer=normalizer)
    before = real_build.table
    age_before = before.loc[before.patient_id == "DUKE_001", "age"].item()
    assert _diff(before, edited.table) == {
        ("DUKE_001", "age"): (age_before, age_before + 5),
        (f"DUKE_{er_case[-3:]}", "er"): (0, 1),
        (f"DUKE_{pcr_case[-3:]}", "pcr"): (0, 1),
        (f"ISPY1_{ispy_er}", "er"): (0, 1),
        ("ISPY1_1001", "pcr"): (0, 1),
    }


def test_unknown_er_code_in_the_real_duke_sheet_is_named(tmp_path, edit_workbook, real_paths, manifest_cases, collections, normalizer):
    copy = edit_workbook(real_paths["duke"], tmp_path / "duke.xlsx", DUKE_SHEET, DUKE_NAME_ROW, DUKE_ID,
                         {("Breast_MRI_002", ER): 7})
    with pytest.raises(ValidationFailed) as err:
        build_table(manifest_cases, {"duke": copy}, mappings=collections, normalizer=normalizer)
    msg = str(err.value)
    assert "unknown code 7 for er" in msg
    assert "duke.xlsx" in msg and "sheet 'Data'" in msg and "column 'ER'" in msg and "row 5" in msg


def test_real_ispy1_renamed_sheet_and_missing_column_are_named(tmp_path, real_paths, manifest_cases, collections, normalizer):
    import openpyxl

    book = openpyxl.load_workbook(real_paths["ispy1"])
    book["outcomes"].title = "Outcomes v2"
    book.save(tmp_path / "renamed.xlsx")
    with pytest.raises(InputUnreadable, match=r"sheet 'outcomes' not found \(sheets: .*Outcomes v2"):
        build_table(manifest_cases, {"ispy1": tmp_path / "renamed.xlsx"}, mappings=collections, normalizer=normalizer)

    book = openpyxl.load_workbook(real_paths["ispy1"])
    book["outcomes"]["G1"].value = "pCR"  # header PCR renamed
    book.save(tmp_path / "column.xlsx")
    with pytest.raises(InputUnreadable, match=r"column 'PCR' not found in the header \(row 1\).*column.xlsx, sheet 'outcomes'"):
        build_table(manifest_cases, {"ispy1": tmp_path / "column.xlsx"}, mappings=collections, normalizer=normalizer)


def test_lineage_names_source_rule_and_counts(real_build):
    lin = real_build.lineage
    assert lin["rows"] == 1506 and lin["collections"] == {"DUKE": 291, "ISPY1": 171, "ISPY2": 980, "NACT": 64}
    age = lin["variables"]["age"]
    assert age["DUKE"]["values"] == 291
    (duke_age,) = age["DUKE"]["from"]
    assert duke_age["source"] == "duke:Clinical_and_Other_Features.xlsx" and duke_age["sheet"] == "Data"
    assert duke_age["rule"].startswith("whole_years_from_days(Date of Birth (Days)") and duke_age["mapping"] == "duke.yaml"
    assert age["ISPY1"]["from"][0]["rule"] == "copy(age) floor"
    assert age["ISPY2"] == {"values": 977, "from": [{"source": "base:clinical_and_imaging_info.xlsx",
                                                     "rule": "carried forward (normalized)", "values": 977}]}
    rec = lin["variables"]["days_to_recurrence"]["ISPY1"]
    assert rec["values"] == 168 and rec["from"][0]["sheet"] == "outcomes" and rec["from"][0]["columns"] == ["rfs_ind", "RFS", "sstat"]
    assert lin["variables"]["mammaprint"]["DUKE"] == {"values": 0, "from": []}
    assert lin["variables"]["tcia_series_uid"]["NACT"]["from"][0]["source"] == "manifest"
    assert lin["inputs"]["sources"]["DUKE"]["sha256"].startswith("6ed8d586")
    norm = {(r["column"], r["from"]): (r["to"], r["count"]) for r in lin["normalizations"]}
    assert norm[("ethnicity", "hawaian")] == ("hawaiian/pacific islander", 1)
    assert norm[("scanner_model", "GENESIS_SIGNA ")] == ("GENESIS_SIGNA", 167)
    assert sum(n for (col, _), (to, n) in norm.items() if col == "menopause") == 512
