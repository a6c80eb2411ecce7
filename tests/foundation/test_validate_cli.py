"""`mamamia validate`: corrupted copies of the real table fail naming the exact row and column."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest


def _row(df: pd.DataFrame, pid: str) -> int:
    return int(df.index[df["patient_id"] == pid][0])


def _set(col: str, pid: str, value):  # type: ignore[no-untyped-def]
    def edit(df: pd.DataFrame) -> tuple[int, str]:
        row = _row(df, pid)
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
        return row, col
    return edit


def _duplicate_id(df: pd.DataFrame) -> tuple[int, str]:
    df["patient_id"] = df["patient_id"].astype(object)
    twin = _row(df, "DUKE_002")
    df.loc[twin, "patient_id"] = "DUKE_001"
    df.attrs["also"] = {twin}
    return 0, "patient_id"


def _wrong_dataset(df: pd.DataFrame) -> tuple[int, str]:
    df["dataset"] = df["dataset"].astype(object)
    row = _row(df, "ISPY1_1001")
    df.loc[row, "dataset"] = "ISPY2"
    return row, "dataset"


def _phases(df: pd.DataFrame) -> tuple[int, str]:
    row = _row(df, "DUKE_001")  # 5 acquisition times
    df.loc[row, "num_phases"] = 3
    return row, "acquisition_times"


CORRUPTIONS = {
    "bad_category": (_set("view", "DUKE_005", "coronal"), "allowed_values"),
    "bad_ethnicity": (_set("ethnicity", "ISPY1_1001", "martian"), "allowed_values"),
    "age_out_of_range": (_set("age", "DUKE_009", 230), "range"),
    "negative_days": (_set("days_to_follow_up", "DUKE_001", -5), "range"),
    "duplicate_id": (_duplicate_id, "unique_patient_id"),
    "wrong_id_pattern": (_set("patient_id", "DUKE_001", "DUKE_1"), "pattern"),
    "id_dataset_mismatch": (_wrong_dataset, "id_matches_dataset"),
    "wrong_type": (_set("age", "DUKE_002", "forty"), "dtype"),
    "non_integer_flag": (_set("pcr", "DUKE_005", 0.5), "dtype"),
    "hr_inconsistent_with_er": (_set("hr", "DUKE_005", 0), "hr_consistent_with_er_pr"),
    "subtype_inconsistent": (_set("tumor_subtype", "DUKE_001", "luminal_a"), "tumor_subtype_consistent_with_receptors"),
    "num_phases_vs_times": (_phases, "num_phases_matches_acquisition_times"),
    "bad_pixel_spacing": (_set("pixel_spacing", "DUKE_002", "[0.5, -0.5]"), "format"),
    "bad_date": (_set("acquisition_date", "ISPY1_1001", "2001/13/45"), "format"),
    "missing_id": (_set("patient_id", "DUKE_009", None), "not_null"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupted_copy_fails_naming_row_and_column(name, v1_table, tmp_path, cli):
    from etl.tables import write_table

    edit, rule = CORRUPTIONS[name]
    df = v1_table.copy()
    row, column = edit(df)
    also = df.attrs.pop("also", set())
    path = tmp_path / f"{name}.csv"
    write_table(df, path)
    res = cli("validate", path, "--format", "json")
    assert res.exit_code == 1, res.stderr
    report = json.loads(res.stdout)
    errors = [v for v in report["violations"] if v["severity"] == "error"]
    assert {"row": row, "column": column, "rule": rule} in [
        {"row": v["row"], "column": v["column"], "rule": v["rule"]} for v in errors
    ], errors[:5]
    # nothing else is wrong: every error sits on the corrupted row (a duplicate also flags its twin)
    assert {v["row"] for v in errors} <= {row} | also


def test_missing_and_extra_columns_are_named(v1_table, tmp_path, cli):
    from etl.tables import write_table

    df = v1_table.drop(columns=["her2"]).assign(notes="x")
    path = write_table(df, tmp_path / "cols.parquet")
    res = cli("validate", path)
    assert res.exit_code == 1
    assert "column her2: required column is missing [column_missing]" in res.stdout
    assert "column notes: column is not one of the 49 variables [column_extra]" in res.stdout


def test_text_report_lists_every_violation_with_row_and_patient(v1_table, tmp_path, cli):
    from etl.tables import write_table

    df = v1_table.copy()
    df["view"] = df["view"].astype(object)
    df.loc[[0, 1, 2], "view"] = "oblique"
    path = write_table(df, tmp_path / "t.xlsx")
    res = cli("validate", path)
    assert res.exit_code == 1
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("error:")]
    assert lines == [
        f"error: row {i} ({pid}) column view value 'oblique': not one of ['axial', 'sagittal'] [allowed_values]"
        for i, pid in enumerate(["DUKE_001", "DUKE_002", "DUKE_005"])
    ]
    assert "INVALID: 1506 rows, 3 errors" in res.stdout


def test_valid_table_exits_zero_with_warnings(v1_path, cli):
    res = cli("validate", v1_path, "--max", "0")
    assert res.exit_code == 0
    assert "valid: 1506 rows, 0 errors, 2158 warnings" in res.stdout


@pytest.mark.parametrize("case", ["missing", "wrong_sheet", "not_a_table", "garbage_xlsx", "empty_csv", "directory_file"])
def test_unreadable_input_exits_2_with_one_line(case, tmp_path, v1_path, cli):
    args = {
        "missing": [tmp_path / "nope.parquet"],
        "wrong_sheet": [v1_path, "--sheet", "Sheet1"],
        "not_a_table": [tmp_path / "notes.txt"],
        "garbage_xlsx": [tmp_path / "bad.xlsx"],
        "empty_csv": [tmp_path / "empty.csv"],
        "directory_file": [tmp_path / "bad.parquet"],
    }[case]
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "bad.xlsx").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1garbage")
    res = cli("validate", *args)
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: "), res.stderr
    assert "Traceback" not in res.stderr


def test_real_subprocess_run_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "etl", "validate", str(tmp_path / "x.csv")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: file not found ({tmp_path / 'x.csv'})"


def _corrupted(v1_table, tmp_path):  # type: ignore[no-untyped-def]
    from etl.tables import write_table

    df = v1_table.copy()
    df["view"] = df["view"].astype(object)
    df.loc[[0, 1, 2], "view"] = "oblique"
    return write_table(df, tmp_path / "t.parquet")


def test_severity_summary_and_verdict_last(v1_table, v1_path, tmp_path, cli):
    path = _corrupted(v1_table, tmp_path)
    every = cli("validate", path)
    errors_only = cli("validate", path, "--severity", "error")
    summary = cli("validate", path, "--summary")
    for res in (every, errors_only, summary):
        assert res.exit_code == 1
        lines = res.stdout.rstrip().splitlines()
        assert lines[-1] == f"{path}: INVALID: 1506 rows, 3 errors, 2158 warnings"  # the verdict is always last
        assert "  error         3  allowed_values" in lines and "  warning    1554  no_surrounding_whitespace" in lines
    listed = [ln for ln in errors_only.stdout.splitlines() if ln.startswith(("error:", "warning:"))]
    assert len(listed) == 3 and all(ln.startswith("error:") for ln in listed)
    assert sum(ln.startswith("warning:") for ln in every.stdout.splitlines()) == 2158
    assert not [ln for ln in summary.stdout.splitlines() if ln.startswith(("error:", "warning:"))]
    ok = cli("validate", v1_path, "--summary")
    assert ok.exit_code == 0 and ok.stdout.strip().splitlines()[-1].endswith("valid: 1506 rows, 0 errors, 2158 warnings")


def test_findings_to_csv_and_json(v1_table, tmp_path, cli):
    path = _corrupted(v1_table, tmp_path)
    res = cli("validate", path, "--out", tmp_path / "findings.csv", "--summary")
    assert res.exit_code == 1 and "wrote 2161 finding(s)" in res.stderr
    found = pd.read_csv(tmp_path / "findings.csv")
    assert list(found.columns) == ["severity", "rule", "row", "patient_id", "column", "value", "message"]
    assert len(found) == 2161 and (found["severity"] == "error").sum() == 3
    errs = found[found["severity"] == "error"]
    assert errs["row"].tolist() == [0, 1, 2] and set(errs["value"]) == {"oblique"} and set(errs["column"]) == {"view"}
    res = cli("validate", path, "--out", tmp_path / "findings.json", "--severity", "error", "--max", "1")
    rows = json.loads((tmp_path / "findings.json").read_text())
    assert [(r["row"], r["patient_id"], r["rule"]) for r in rows] == [(0, "DUKE_001", "allowed_values"),
                                                                      (1, "DUKE_002", "allowed_values"),
                                                                      (2, "DUKE_005", "allowed_values")]
    bad = cli("validate", path, "--out", tmp_path / "findings.txt")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --out must end in .csv or .json")
