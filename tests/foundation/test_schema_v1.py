"""The schema against the real published v1 table."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from etl.validate.schema import column_names, load_schema, validate_frame

REPO = Path(__file__).resolve().parents[2]


def test_schema_has_the_49_published_columns_in_order(v1_path):
    header = pd.read_excel(v1_path, sheet_name="dataset_info", nrows=0).columns.tolist()
    assert column_names() == header
    assert len(header) == 49


def test_every_column_has_dtype_description_and_group():
    schema = load_schema()
    groups = {c.group for c in schema.columns.values()}
    assert groups == {"clinical", "demographic", "imaging"}
    for c in schema.columns.values():
        assert c.description, c.name
        assert c.dtype in ("Int64", "float64", "str")


def test_v1_table_has_zero_errors(v1_path):
    from etl.tables import read_table

    report = validate_frame(read_table(v1_path, raw=True))
    assert report.n_errors == 0, [v.describe() for v in report.errors[:5]]
    assert report.n_rows == 1506


def test_v1_warnings_are_the_known_issues_listed_in_the_readme(v1_path):
    """Every warning v1 raises is listed in the README's known-issues section with its count."""
    from etl.tables import read_table

    counts = validate_frame(read_table(v1_path, raw=True)).counts()["warning"]
    # facts from the field notes, computed independently of the validator
    assert counts["event_not_after_follow_up"] == 52  # 32 recurrences + 20 deaths after follow-up
    assert counts["acquisition_time_missing_for_a_phase"] == 3
    assert counts["acquisition_times_present"] == 33
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Known issues in v1", 1)[1].split("\n## ", 1)[0]
    for rule, n in counts.items():
        m = re.search(rf"`{rule}`[^\n|]*\|\s*{n}\s*\|", section)
        assert m, f"README known issues lack `{rule}` with count {n}"


def test_v1_specific_warnings_name_the_right_rows(v1_path):
    from etl.tables import read_table

    report = validate_frame(read_table(v1_path, raw=True))
    short = {v.patient_id for v in report.warnings if v.rule == "acquisition_time_missing_for_a_phase"}
    assert short == {"DUKE_406", "DUKE_470", "DUKE_775"}
    trailing = [v for v in report.warnings if v.rule == "no_surrounding_whitespace" and v.column == "scanner_model"]
    assert trailing and all(v.value != v.value.strip() for v in trailing)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".xlsx"])
def test_table_round_trips_through_every_file_form(v1_table, tmp_path, suffix):
    from etl.tables import read_table, write_table

    path = write_table(v1_table, tmp_path / f"t{suffix}")
    back = read_table(path)
    assert back.columns.tolist() == v1_table.columns.tolist()
    for c in v1_table.columns:
        assert back[c].astype(str).tolist() == v1_table[c].astype(str).tolist(), c


def test_parquet_is_typed(v1_table, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from etl.tables import write_table

    path = write_table(v1_table, tmp_path / "t.parquet")
    schema = pq.read_schema(path)
    assert schema.field("pixel_spacing").type == pa.list_(pa.float64())
    assert schema.field("acquisition_times").type == pa.list_(pa.int64())
    assert schema.field("acquisition_date").type == pa.date32()
    assert schema.field("pcr").type == pa.int64()
    table = pq.read_table(path)
    row = v1_table.index[v1_table["patient_id"] == "DUKE_001"][0]
    assert table.column("acquisition_times")[row].as_py() == [0, 584, 714, 846, 977]
    assert schema.field("age").metadata[b"description"].startswith(b"Age")


def test_xlsx_drop_in_is_byte_identical_when_rewritten(v1_table, tmp_path):
    from etl.tables import write_table

    a = write_table(v1_table, tmp_path / "a.xlsx").read_bytes()
    b = write_table(v1_table, tmp_path / "b.xlsx").read_bytes()
    assert a == b
    legend = pd.read_excel(tmp_path / "a.xlsx", sheet_name="legend")
    assert legend["Field"].tolist() == column_names()


def test_release_split_column_is_optional_and_checked(v1_table):
    df = v1_table.copy()
    df["split"] = ["train"] * (len(df) - 1) + ["validation"]
    report = validate_frame(df)
    assert [(v.row, v.column, v.rule) for v in report.errors] == [(1505, "split", "allowed_values")]
    moved = df[["split", *v1_table.columns]]
    assert "column_order" in validate_frame(moved).counts()["error"]
