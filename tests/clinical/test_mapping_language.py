"""The mapping language on small hand-made workbooks: each operation, each error and where it points."""

from __future__ import annotations

import textwrap
from pathlib import Path

import openpyxl
import pytest

from etl.errors import ConfigError, InputUnreadable, ValidationFailed
from etl.transform.clinical import Normalizer, apply_mapping, load_mapping, read_source

MAPPING = """
kind: collection
dataset: TOY
tcia:
  collection: Toy-Collection
  patient_id: {{match: '^TOY_(?P<n>\\d{{2}})$', format: 'Toy-{{n}}'}}
source:
  sheets:
    main: {{name: Main, header_rows: 2, name_row: 2, id_column: Subject}}
    out: {{name: Outcome, header_rows: 1, name_row: 1, id_column: Subject}}
  patient_id: {{match: '^S(?P<n>\\d{{2}})$', format: 'TOY_{{n}}'}}
  missing_codes: [NA]
variables:
{variables}
"""

VARIABLES = """
  er: {column: ER, map: {0: 0, 1: 1}}
  menopause: {column: Meno, map: {0: pre, 1: post, 2: null}, on_unknown: null}
  age: {column: Birth days, derive: {op: whole_years_from_days, days_per_year: 365, sign: -1}}
  hr: {derive: {op: any_of, columns: [ER, PR]}}
  tumor_subtype: {derive: {op: combine, columns: [ER, HER2], map: {"1,0": luminal, "0,1": her2_pure, "1,1": her2_enriched, "0,0": triple_negative}}}
  weight: {column: Weight lb, scale: 0.45359237}
  days_to_death:
    sheet: out
    derive:
      op: cases
      cases:
        - {when: {column: Status, in: [dead]}, from: Days}
        - {when: {column: Status, in: [alive]}, value: 0}
        - {when: {column: Status, is: missing}, value: null}
"""

ROWS = [
    # Subject, ER, PR, HER2, Meno, Birth days, Weight lb
    ["S01", 1, 0, 0, 0, -15000, 150],
    ["S02", 0, 1, 1, 1, -25000, "NA"],
    ["S03", 0, 0, 0, 9, -9125, 200.0],
    [None, None, None, None, None, None, None],  # blank trailing line is ignored
]
OUTCOME = [["S01", "dead", 400], ["S02", "alive", 1000], ["S03", None, None]]


def make_book(path: Path, rows=ROWS, outcome=OUTCOME, main_sheet="Main", header=None) -> Path:
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = main_sheet
    ws.append(["group", None, None, None, None, None, None])
    ws.append(header or ["Subject", "ER ", "PR", "HER2", "Meno", "Birth  days", "Weight lb"])
    for r in rows:
        ws.append(r)
    out = book.create_sheet("Outcome")
    out.append(["Subject", "Status", "Days"])
    for r in outcome:
        out.append(r)
    book.save(path)
    return path


def make_mapping(path: Path, variables: str = VARIABLES) -> Path:
    path.write_text(MAPPING.format(variables=textwrap.indent(textwrap.dedent(variables).strip("\n"), "  ")))
    return path


@pytest.fixture
def toy(tmp_path):
    return load_mapping(make_mapping(tmp_path / "toy.yaml")), make_book(tmp_path / "toy.xlsx")


def test_every_operation_computes_from_the_cells(toy):
    mapping, book = toy
    res = apply_mapping(mapping, read_source(mapping, book), ["TOY_01", "TOY_02", "TOY_03"])
    v = res.values
    assert v["er"] == [1, 0, 0]
    assert v["menopause"] == ["pre", "post", None]  # 9 is unknown but on_unknown: null
    assert v["age"] == [41, 68, 25]  # floor(15000/365)=41, floor(25000/365)=68, 9125/365=25 exactly
    assert v["hr"] == [1, 1, 0]
    assert v["tumor_subtype"] == ["luminal", "her2_pure", "triple_negative"]
    assert v["weight"][0] == pytest.approx(68.0388555) and v["weight"][1] is None
    assert v["days_to_death"] == [400, 0, None]
    assert res.lineage["age"]["rule"].startswith("whole_years_from_days(Birth days")
    assert res.lineage["days_to_death"]["sheet"] == "Outcome"
    assert res.lineage["er"]["values"] == 3 and res.lineage["weight"]["values"] == 2


def test_tcia_rule_is_read_from_the_mapping(toy):
    mapping, _ = toy
    assert mapping.tcia.collection == "Toy-Collection"
    assert mapping.tcia.patient_id("TOY_07") == "Toy-07"
    assert mapping.tcia.patient_id("TOY_7") is None


def test_unknown_code_names_file_sheet_column_row_and_value(tmp_path):
    mapping = load_mapping(make_mapping(tmp_path / "toy.yaml"))
    rows = [list(r) for r in ROWS]
    rows[1][1] = 7  # ER code 7 for S02 (spreadsheet row 4)
    book = make_book(tmp_path / "bad.xlsx", rows=rows)
    with pytest.raises(ValidationFailed) as err:
        apply_mapping(mapping, read_source(mapping, book), ["TOY_01", "TOY_02"])
    msg = str(err.value)
    assert "unknown code 7 for er" in msg
    assert "bad.xlsx" in msg and "sheet 'Main'" in msg and "column 'ER'" in msg and "row 4" in msg


def test_unknown_case_fails_unless_on_unknown_null(tmp_path):
    book = make_book(tmp_path / "b.xlsx", outcome=[["S01", "lost", 10], ["S02", "alive", 1], ["S03", None, None]])
    mapping = load_mapping(make_mapping(tmp_path / "toy.yaml"))
    with pytest.raises(ValidationFailed, match=r"no case of days_to_death matches the values \{'Status': 'lost'"):
        apply_mapping(mapping, read_source(mapping, book), ["TOY_01"])


def test_renamed_sheet_is_named(tmp_path):
    mapping = load_mapping(make_mapping(tmp_path / "toy.yaml"))
    book = make_book(tmp_path / "b.xlsx", main_sheet="Main data")
    with pytest.raises(InputUnreadable, match=r"sheet 'Main' not found \(sheets: Main data, Outcome\)"):
        read_source(mapping, book)


def test_missing_column_is_named(tmp_path):
    mapping = load_mapping(make_mapping(tmp_path / "toy.yaml"))
    book = make_book(tmp_path / "b.xlsx", header=["Subject", "ER", "PgR", "HER2", "Meno", "Birth days", "Weight lb"])
    with pytest.raises(InputUnreadable, match=r"column 'PR' not found in the header \(row 2\).*sheet 'Main'"):
        apply_mapping(mapping, read_source(mapping, book), ["TOY_01"])


def test_case_missing_from_source_is_an_error(toy):
    mapping, book = toy
    with pytest.raises(ValidationFailed, match=r"1 TOY case\(s\) of the manifest are not in the source: TOY_09"):
        apply_mapping(mapping, read_source(mapping, book), ["TOY_01", "TOY_09"])


def test_id_outside_the_rule_is_an_error(tmp_path):
    mapping = load_mapping(make_mapping(tmp_path / "toy.yaml"))
    rows = [list(r) for r in ROWS]
    rows[2][0] = "X03"
    with pytest.raises(ValidationFailed, match=r"patient id 'X03' does not match.*row 5"):
        read_source(mapping, make_book(tmp_path / "b.xlsx", rows=rows))


@pytest.mark.parametrize(
    "variables, message",
    [
        ("er: {column: ER, mapp: {0: 0}}", r"unknown key\(s\) \['mapp'\]"),
        ("er: {derive: {op: guess, columns: [ER]}}", r"derive.op must be one of"),
        ("er: {column: ER, sheet: nowhere}", r"sheet 'nowhere' is not declared"),
        ("er: {column: ER, on_unknown: skip}", r"on_unknown must be 'error' or 'null'"),
        ("er: {derive: {op: cases, cases: [{when: {column: ER}, value: 1}]}}", r"needs 'in: \[codes\]'"),
    ],
)
def test_mapping_mistakes_are_config_errors_naming_the_variable(tmp_path, variables, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_mapping(make_mapping(tmp_path / "toy.yaml", variables))
    assert "variables.er" in str(err.value)


def test_normalizer_counts_every_change(tmp_path):
    import pandas as pd

    path = tmp_path / "normalize.yaml"
    path.write_text(
        "kind: normalize\nstrip: true\ncolumns:\n  ethnicity:\n    replace: {hawaian: hawaiian/pacific islander}\n"
        "  menopause:\n    patterns:\n      - {match: '(?i)pre\\b', value: pre}\n"
    )
    df = pd.DataFrame({"ethnicity": ["hawaian", "hawaian ", "asian", None],
                       "menopause": ["pre (<6 months since LMP)", "pre", "post ", None]})
    out, records = Normalizer.load(path).apply(df)
    assert out["ethnicity"].tolist()[:3] == ["hawaiian/pacific islander"] * 2 + ["asian"]
    assert out["menopause"].tolist()[:3] == ["pre", "pre", "post"]
    counts = {(r["rule"], r["column"], r["from"]): r["count"] for r in records}
    assert counts == {
        ("replace", "ethnicity", "hawaian"): 2,
        ("strip", "ethnicity", "hawaian "): 1,
        ("strip", "menopause", "post "): 1,
        ("pattern (?i)pre\\b", "menopause", "pre (<6 months since LMP)"): 1,
    }
