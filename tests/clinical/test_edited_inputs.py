"""Sources and bases edited the way curators edit them: the values must not change, faults must be named."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from etl.errors import ConfigError, InputUnreadable, ValidationFailed
from etl.transform.clinical import apply_mapping, load_mapping, read_source
from tests.clinical.test_mapping_language import make_mapping

IDS = ["TOY_01", "TOY_02", "TOY_03"]
EXPECTED = {  # what the published toy layout gives (test_every_operation_computes_from_the_cells)
    "er": [1, 0, 0],
    "menopause": ["pre", "post", None],
    "age": [41, 68, 25],
    "hr": [1, 1, 0],
    "tumor_subtype": ["luminal", "her2_pure", "triple_negative"],
    "days_to_death": [400, 0, None],
}


def _book(path: Path, main: list[list], outcome: list[list] | None = None, first_sheet: str | None = None) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    if first_sheet:
        book.create_sheet(first_sheet).append(["notes, not data"])
    ws = book.create_sheet("Main")
    for r in main:
        ws.append(r)
    out = book.create_sheet("Outcome")
    for r in outcome or [["Subject", "Status", "Days"], ["S01", "dead", 400], ["S02", "alive", 1000], ["S03", None, None]]:
        out.append(r)
    book.save(path)
    return path


def _values(tmp_path: Path, book: Path) -> dict[str, list]:
    mapping = load_mapping(make_mapping(tmp_path / "toy.yaml"))
    res = apply_mapping(mapping, read_source(mapping, book), IDS)
    return {k: res.values[k] for k in EXPECTED} | {"weight": res.values["weight"]}


def test_reordered_columns_text_numbers_spaces_blank_and_title_rows_change_nothing(tmp_path):
    main = [
        [None],                                               # blank rows above the header do not count
        ["Toy export, 2024 (added title line)"],              # a line above the declared header rows
        ["group"],
        [None],                                               # blank row between the header rows
        ["Weight lb", "Birth  days", "Meno", "HER2", "PR", "ER ", "Subject"],  # columns reordered
        ["150", " -15000 ", "0.0", 0, "0", "1.0", "S01"],  # numbers stored as text, with spaces
        [None, None, None, None, None, None, "  "],           # blank row inside the body
        [" na ", -25000.0, 1, "1", 1.0, 0, "S02 "],           # missing code in another case, id with a space
        [200.0, "-9125", 9, "0 ", 0, " 0", "S03"],
    ]
    outcome = [["Subject", "Days", "Status"], ["S01", "400", "DEAD"], ["S02", 1000, " alive"], ["S03", None, None]]
    got = _values(tmp_path, _book(tmp_path / "edited.xlsx", main, outcome, first_sheet="Readme"))
    assert {k: got[k] for k in EXPECTED} == EXPECTED
    assert got["weight"][0] == pytest.approx(68.0388555) and got["weight"][1] is None


def test_header_found_below_added_rows_is_the_row_named_in_errors(tmp_path):
    main = [[None], ["title"], ["group"], ["Subject", "ER", "PgR", "HER2", "Meno", "Birth days", "Weight lb"],
            ["S01", 1, 0, 0, 0, -15000, 150], ["S02", 0, 1, 1, 1, -25000, 1], ["S03", 0, 0, 0, 9, -9125, 2]]
    with pytest.raises(InputUnreadable, match=r"column 'PR' not found in the header \(row 4\); closest: 'PgR'"):
        _values(tmp_path, _book(tmp_path / "b.xlsx", main))


def test_a_sheet_without_the_id_column_names_it(tmp_path):
    main = [["group"], ["Patient", "ER", "PR"], ["S01", 1, 0]]
    with pytest.raises(InputUnreadable, match=r"no header row with the id column 'Subject' \(expected in row 2.*sheet 'Main'"):
        _values(tmp_path, _book(tmp_path / "b.xlsx", main))


def test_a_formula_saved_without_its_result_is_named_not_read_as_blank(tmp_path):
    main = [["group"], ["Subject", "ER", "PR", "HER2", "Meno", "Birth days", "Weight lb"],
            ["S01", "=1*1", 0, 0, 0, -15000, 150], ["S02", 0, 1, 1, 1, -25000, 1], ["S03", 0, 0, 0, 9, -9125, 2]]
    with pytest.raises(ValidationFailed) as err:
        _values(tmp_path, _book(tmp_path / "f.xlsx", main))
    msg = str(err.value)
    assert "unknown code '=1*1 (formula without a saved result)' for er" in msg and "column 'ER', row 3" in msg


def test_a_new_text_code_is_still_an_error(tmp_path):
    main = [["group"], ["Subject", "ER", "PR", "HER2", "Meno", "Birth days", "Weight lb"],
            ["S01", "pos", 0, 0, 0, -15000, 150], ["S02", 0, 1, 1, 1, -25000, 1], ["S03", 0, 0, 0, 9, -9125, 2]]
    with pytest.raises(ValidationFailed, match=r"unknown code 'pos' for er.*column 'ER', row 3"):
        _values(tmp_path, _book(tmp_path / "c.xlsx", main))


def test_map_keys_that_are_one_code_are_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"map keys 'NP' and 'np' are the same code.*variables.er"):
        load_mapping(make_mapping(tmp_path / "toy.yaml", "er: {column: ER, map: {NP: 0, np: 1}}"))


# --- through the CLI -------------------------------------------------------------------------------------


@pytest.fixture
def nact(tmp_path):
    """A two-case manifest (NACT, no source spreadsheet) and a base table for it."""
    manifest = pd.read_csv(Path(__file__).resolve().parents[2] / "manifests" / "mama-mia-v1.csv", dtype=str)
    manifest[manifest.patient_id.isin(["NACT_01", "NACT_02"])].to_csv(tmp_path / "m.csv", index=False)
    (tmp_path / "base.csv").write_text("patient_id,dataset,age\nNACT_01,NACT,51\nNACT_02,NACT,44\n")
    return tmp_path


def test_base_faults_are_one_line_errors_and_write_nothing(nact, cli):
    out = nact / "out" / "t.csv"
    res = cli("clinical", "build", "--base", nact / "missing.xlsx", "--manifest", nact / "m.csv", "--out", out)
    assert res.exit_code == 2 and res.stderr.strip().splitlines()[-1] == f"error: file not found ({nact / 'missing.xlsx'})"
    (nact / "dup.csv").write_text("patient_id,dataset,age\nNACT_01,NACT,51\nNACT_02,NACT,44\nNACT_01,NACT,52\n")
    res = cli("clinical", "build", "--base", nact / "dup.csv", "--manifest", nact / "m.csv", "--out", out)
    assert res.exit_code == 1 and "patient_id 'NACT_01' appears twice in the base table (rows 2 and 4)" in res.stderr
    res = cli("clinical", "build", "--base", nact / "base.csv", "--manifest", nact / "m.csv", "--out", nact / "t.json")
    assert res.exit_code == 2 and "unsupported table format .json" in res.stderr
    assert not (nact / "out").exists() and not list(nact.glob("t.*"))


def test_shipped_exclusions_apply_to_the_build(nact, cli, monkeypatch):
    shipped = nact / "exclusions.csv"
    shipped.write_text("patient_id,reason\nNACT_02,consent withdrawn\n")
    monkeypatch.setattr("etl.caselist.shipped_exclusions_path", lambda: shipped)
    out = nact / "t.csv"
    res = cli("clinical", "build", "--base", nact / "base.csv", "--manifest", nact / "m.csv", "--out", out)
    assert res.exit_code == 0, res.stderr
    from etl.tables import read_table

    table = read_table(out)
    assert table["patient_id"].tolist() == ["NACT_01"] and table["age"].tolist() == [51]
    lineage = json.loads((nact / "t.csv.lineage.json").read_text())
    assert lineage["excluded"] == {"NACT_02": "consent withdrawn"} and lineage["rows"] == 1
    assert lineage["variables"]["age"]["NACT"] == {
        "values": 1, "from": [{"source": "base:base.csv", "rule": "carried forward (normalized)", "values": 1}]}


@pytest.mark.slow
def test_real_duke_sheet_resaved_with_edits_builds_the_same_rows(tmp_path, real_paths, real_build, manifest_cases,
                                                                collections, normalizer):
    """The published Duke sheet, re-saved by openpyxl with its columns reversed, a title line and blank rows
    added, every number stored as text and an extra sheet in front: the Duke rows must not change."""
    import warnings

    from etl.transform.table import build_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        src = openpyxl.load_workbook(real_paths["duke"], read_only=True, data_only=True)
        rows = [list(r) for r in src["Data"].iter_rows(values_only=True)]
        src.close()
    width = max(len(r) for r in rows)
    rows = [r + [None] * (width - len(r)) for r in rows]
    rows = [[r[0], *reversed(r[1:])] for r in rows]
    body = [[f" {v} " if isinstance(v, (int, float)) else v for v in r] for r in rows[3:]]
    book = openpyxl.Workbook(write_only=True)
    book.create_sheet("About").append(["edited copy"])
    ws = book.create_sheet("Data")
    for r in [["Duke clinical features (re-exported)"], [], *rows[:3], *body[:100], [], *body[100:], [], []]:
        ws.append(r)
    book.save(tmp_path / "duke.xlsx")

    edited = build_table([c for c in manifest_cases if c.dataset == "DUKE"], {"duke": tmp_path / "duke.xlsx"},
                         mappings=collections, normalizer=normalizer)
    before = real_build.table[real_build.table.dataset == "DUKE"].reset_index(drop=True)
    for var in collections["DUKE"].rules:
        assert edited.table[var].astype(object).where(edited.table[var].notna(), None).tolist() == \
            before[var].astype(object).where(before[var].notna(), None).tolist(), var
