"""Formula-looking text from a DICOM header travels convert -> clinical build -> release build -> xlsx and
arrives as a text cell (never a formula); CSV outputs quote-prefix it; `validate` warns naming the cell."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

SITE = '=HYPERLINK("http://evil.example/x","x")'
MODEL = "=1+1"
PID = "NACT_01"
OTHER = "NACT_02"  # plain headers: a second case so that the release can be split


@pytest.fixture(scope="module")
def release_from_hostile_headers(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One NACT case whose DICOM headers carry formula-looking site and scanner model, built into a release
    through the real command line (convert, clinical build, release build)."""
    from etl.cli import run
    from etl.synth.dicom import StudySpec, write_study
    from etl.tables import read_table, write_table
    from tests.conftest import V1_TABLE
    from tests.release.release_helpers import write_definition

    from etl.resources import data_path

    tmp = tmp_path_factory.mktemp("formula")
    for i, (pid, headers) in enumerate(((PID, {"site": SITE, "scanner_model": MODEL}), (OTHER, {}))):
        write_study(tmp / "dicom" / pid, StudySpec(patient_id=pid, dataset="NACT", vendor="GE", view="sagittal",
                                                   n_phases=3, matrix=(16, 16), n_slices=6, bilateral=False,
                                                   headers=headers), seed=3 + i)  # fmt: skip
    manifest = pd.read_csv(data_path("manifests/mama-mia-v1.csv"), dtype=str)
    manifest[manifest["patient_id"].isin([PID, OTHER])].to_csv(tmp / "manifest.csv", index=False)
    staged = tmp / "staged"
    assert run(["convert", str(tmp / "dicom"), str(staged)]) == 0
    imaging = json.loads((staged / "imaging" / f"{PID.lower()}.imaging.json").read_text())
    assert imaging["site"] == SITE and imaging["scanner_model"] == MODEL  # the header value as it was

    base = read_table(V1_TABLE)
    base = base[base["patient_id"].isin([PID, OTHER])].reset_index(drop=True)
    base.loc[base["patient_id"] == PID, ["site", "scanner_model"]] = pd.NA  # the imaging JSON fills them
    write_table(base, tmp / "base.parquet")
    table = staged / "clinical_and_imaging_info.parquet"
    build = ["clinical", "build", "--base", str(tmp / "base.parquet"), "--imaging", str(staged),
             "--manifest", str(tmp / "manifest.csv")]  # fmt: skip
    assert run([*build, "--out", str(table)]) == 0
    assert run([*build, "--out", str(tmp / "table.csv")]) == 0
    definition = write_definition(tmp / "def.yaml", staged=str(staged), table=str(table),
                                  split={"seed": 42, "test_fraction": 0.2, "folds": 2})  # fmt: skip
    out = tmp / "rel"
    assert run(["release", "build", str(definition), "--out", str(out), "--staged", str(staged),
                "--table", str(table)]) == 0  # fmt: skip
    return tmp, out


def test_formula_looking_header_values_arrive_as_text_cells(release_from_hostile_headers) -> None:
    import openpyxl

    _, out = release_from_hostile_headers
    [xlsx] = out.glob("*.xlsx")
    book = openpyxl.load_workbook(xlsx)
    ws = book["dataset_info"]
    header = [c.value for c in ws[1]]
    [row] = [dict(zip(header, r)) for r in ws.iter_rows(min_row=2) if r[0].value == PID]
    for name, want in (("site", SITE), ("scanner_model", MODEL)):
        cell = row[name]
        assert cell.value == want and cell.data_type == "s" and cell.quotePrefix, (name, cell.value, cell.data_type)
    assert not [c.coordinate for r in ws.iter_rows() for c in r if c.data_type == "f"]  # no formula anywhere
    # numbers stay numbers
    assert row["age"].data_type == "n" and isinstance(row["age"].value, int)
    # the raw XML: an inline string, no <f> element
    import zipfile

    with zipfile.ZipFile(xlsx) as zf:
        sheet = zf.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet and "HYPERLINK" in sheet


def test_csv_output_quote_prefixes_formula_like_text(release_from_hostile_headers) -> None:
    import csv

    tmp, _ = release_from_hostile_headers
    with open(tmp / "table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    [row] = [r for r in rows if r["patient_id"] == PID]
    assert row["site"] == "'" + SITE and row["scanner_model"] == "'" + MODEL
    assert row["patient_id"] == PID and not row["age"].startswith("'")


def test_validate_warns_with_the_cell(release_from_hostile_headers, cli) -> None:
    _, out = release_from_hostile_headers
    [xlsx] = out.glob("*.xlsx")
    res = cli("validate", xlsx, "--format", "json")
    assert res.exit_code == 0, res.stderr
    found = [v for v in json.loads(res.stdout)["violations"] if v["rule"] == "formula_like_text"]
    assert sorted((v["patient_id"], v["column"], v["value"], v["severity"]) for v in found) == [
        (PID, "scanner_model", MODEL, "warning"), (PID, "site", SITE, "warning")]


@pytest.mark.parametrize(
    ("value", "formula_like"),
    [("=1+1", True), ("+SUM(A1:A2)", True), ("-2+3", True), ("@cmd", True), ("\t=1", True), ("\r=1", True),
     ("-5", False), ("+1.5e3", False), ("-.5", False), ("Site AAB", False), ("", False), (" =1", False),
     (-5, False), (3.5, False), (None, False)],
)
def test_formula_like_is_text_that_is_not_a_number(value, formula_like) -> None:
    from etl.safetext import csv_cell, is_formula_like

    assert is_formula_like(value) is formula_like
    assert csv_cell(value) == ("'" + value if formula_like else value)


def test_write_table_xlsx_and_csv_keep_text_text_and_numbers_numbers(tmp_path: Path) -> None:
    import openpyxl

    from etl.tables import write_table
    from etl.validate.schema import STRING_DTYPE

    df = pd.DataFrame({
        "site": pd.array(["=1+1", "-5", "@x", None, "plain"], dtype=STRING_DTYPE),
        "age": pd.array([-3, 40, None, 51, 60], dtype="Int64"),
        "=HYPERLINK(\"http://e.example\")": [1.5, -2.5, 0.0, None, 4.0],
    })  # fmt: skip
    write_table(df, tmp_path / "t.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "t.xlsx")["dataset_info"]
    cells = {c.coordinate: c for r in ws.iter_rows() for c in r}
    assert (cells["C1"].value, cells["C1"].data_type, cells["C1"].quotePrefix) == ('=HYPERLINK("http://e.example")', "s", True)
    assert (cells["A2"].value, cells["A2"].data_type, cells["A2"].quotePrefix) == ("=1+1", "s", True)
    assert (cells["A3"].value, cells["A3"].quotePrefix) == ("-5", False)  # a number written as text: left alone
    assert (cells["A4"].value, cells["A4"].data_type, cells["A4"].quotePrefix) == ("@x", "s", True)
    assert (cells["B2"].value, cells["B2"].data_type) == (-3, "n") and (cells["C3"].value, cells["C3"].data_type) == (-2.5, "n")
    assert not [c for c in cells.values() if c.data_type == "f"]

    write_table(df, tmp_path / "t.csv")
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0] == 'site,age,"\'=HYPERLINK(""http://e.example"")"'
    assert lines[1:] == ["'=1+1,-3,1.5", "-5,40,-2.5", "'@x,,0.0", ",51,", "plain,60,4.0"]
    assert str(df.loc[0, "site"]) == "=1+1"  # the caller's frame is not changed


def test_query_csv_and_manifest_csv_are_formula_safe(cli, tmp_path) -> None:
    """Every CSV writer escapes formula-like text: query --format csv and the case manifest."""
    import pandas as pd

    from etl.transform.manifest import manifest_csv, MANIFEST_COLUMNS

    row = {c: "x" for c in MANIFEST_COLUMNS}
    row[MANIFEST_COLUMNS[-1]] = "=HYPERLINK(\"http://x\",\"y\")"
    text = manifest_csv(pd.DataFrame([row]))
    assert "'=HYPERLINK" in text and "\n=HYPERLINK" not in text and ",=HYPERLINK" not in text

    table = tmp_path / "t.csv"
    pd.DataFrame({"patient_id": ["DUKE_001", "DUKE_002"], "site": ["@SUM(A1)", "-12"]}).to_csv(table, index=False)
    res = cli("query", table, "--sql", "select patient_id, site from cases", "--format", "csv")
    assert res.exit_code == 0, res.stderr
    assert "'@SUM(A1)" in res.stdout and "\n-12" in res.stdout.replace(",", "\n")  # numbers stay numbers
