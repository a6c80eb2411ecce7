"""Session fixtures for the clinical harmonization tests: real sources are read once, edited copies go to tmp."""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path

import openpyxl
import pytest

from tests.conftest import DUKE_SOURCE, ISPY1_SOURCE, V1_TABLE


@pytest.fixture(scope="session")
def real_paths() -> dict[str, Path]:
    for p in (DUKE_SOURCE, ISPY1_SOURCE, V1_TABLE):
        if not p.exists():
            pytest.fail(f"test data missing: {p} (see tests/data/README.md)")
    return {"duke": DUKE_SOURCE, "ispy1": ISPY1_SOURCE, "base": V1_TABLE}


@pytest.fixture(scope="session")
def collections():
    from etl.transform.clinical import load_collections

    return load_collections()


@pytest.fixture(scope="session")
def normalizer():
    from etl.transform.clinical import Normalizer

    return Normalizer.load()


@pytest.fixture(scope="session")
def manifest_cases():
    from etl.transform.table import cases_from_manifest

    cases, skipped, _ = cases_from_manifest(None)
    return cases


@pytest.fixture(scope="session")
def real_build(real_paths, manifest_cases, collections, normalizer):
    """All 1506 rows built from the two real sources + the v1 table as base (built once)."""
    from etl.transform.table import build_table

    return build_table(
        manifest_cases,
        {"duke": real_paths["duke"], "ispy1": real_paths["ispy1"]},
        base=real_paths["base"],
        mappings=collections,
        normalizer=normalizer,
    )


def _edit_workbook(src: Path, dst: Path, sheet: str, name_row: int, id_column: str,
                   edits: dict[tuple[object, str], object]) -> Path:
    """Copy ``src`` to ``dst`` setting numeric cells addressed by (patient id cell value, column header).

    The edit is made in the sheet's XML, so every other byte of the workbook (styles, other sheets, cached
    formula values) stays as published; loading and saving through openpyxl would rewrite all of it.
    """
    from etl.transform.xlsx_values import ValueWorkbook, column_letter

    with ValueWorkbook(src) as book:
        rows = list(book.rows(sheet))
        member = book.part(sheet)
    with zipfile.ZipFile(src) as zf:
        members = {i.filename: zf.read(i.filename) for i in zf.infolist()}
    header = dict(rows)[name_row]
    col_of = {" ".join(str(v).split()): i for i, v in enumerate(header) if v is not None}
    id_idx = col_of[id_column]
    row_of = {r[id_idx]: n for n, r in rows if n > name_row and len(r) > id_idx and r[id_idx] is not None}
    xml = members[member].decode("utf-8")
    for (pid, column), value in edits.items():
        ref = f"{column_letter(col_of[column])}{row_of[pid]}"
        cell = re.compile(rf'<c r="{ref}"(?P<attrs>[^>]*?)(?:/>|>.*?</c>)', re.S)
        match = cell.search(xml)
        assert match, f"cell {ref} not in {sheet}"
        attrs = re.sub(r'\s+t="[^"]*"', "", match.group("attrs"))
        xml = xml[: match.start()] + f'<c r="{ref}"{attrs}><v>{value}</v></c>' + xml[match.end():]
    members[member] = xml.encode("utf-8")
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in members.items():
            out.writestr(name, data)
    return dst


def _read_cells(src: Path, sheet: str, name_row: int, id_column: str, columns: list[str]) -> dict[object, dict[str, object]]:
    """{patient id cell: {column: value}} of a sheet, for choosing which cells to edit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        book = openpyxl.load_workbook(src, read_only=True, data_only=True)
    rows = list(book[sheet].iter_rows(values_only=True))
    book.close()
    names = [" ".join(str(c).split()) if c is not None else None for c in rows[name_row - 1]]
    idx = {c: names.index(c) for c in [id_column, *columns]}
    return {r[idx[id_column]]: {c: r[idx[c]] for c in columns} for r in rows[name_row:] if r[idx[id_column]] is not None}


@pytest.fixture(scope="session")
def edit_workbook():
    """edit_workbook(src, dst, sheet, name_row, id_column, {(id, column): value}) -> dst"""
    return _edit_workbook


@pytest.fixture(scope="session")
def read_cells():
    """read_cells(src, sheet, name_row, id_column, [columns]) -> {id: {column: value}}"""
    return _read_cells
