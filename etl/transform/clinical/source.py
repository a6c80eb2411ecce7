"""Reading a source workbook: the sheets a mapping names, found by header text wherever header and columns
sit, one row per patient id; every problem names the file, sheet, row and column."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.errors import ConfigError, InputUnreadable, ValidationFailed
from etl.transform.clinical.mapping import CollectionMapping, SheetSpec, SourceSpec
from etl.transform.clinical.values import cell_key, clean_name

log = logging.getLogger("etl.transform.clinical")


def _fold(name: Any) -> str:
    return clean_name(name).casefold()


def _closest(wanted: str, names: Iterable[str]) -> str:
    """``"; closest: 'pCR'"`` for an error message about a name that is not there (never used as a match)."""
    import difflib

    folded: dict[str, str] = {}
    for n in names:
        folded.setdefault(_fold(n), n)
    close = difflib.get_close_matches(_fold(wanted), list(folded), n=3, cutoff=0.6)
    return f"; closest: {', '.join(repr(folded[c]) for c in close)}" if close else ""


def _header_columns(row: tuple[Any, ...]) -> dict[str, list[int]]:
    columns: dict[str, list[int]] = {}
    for i, name in enumerate(row):
        if name is not None and clean_name(name):
            columns.setdefault(clean_name(name), []).append(i)
    return columns


def _blank(row: tuple[Any, ...]) -> bool:
    return all(v is None or (isinstance(v, str) and not v.strip()) for v in row)


@dataclass
class SheetData:
    """One sheet: column name -> index, and each patient's row (with its spreadsheet row number)."""

    spec: SheetSpec
    columns: dict[str, list[int]]
    rows: dict[str, tuple[int, tuple[Any, ...]]]
    header_row: int = 0  # spreadsheet row of the column names (the declared name_row unless rows were added)

    def index(self, column: str, file: str) -> int:
        where = f"{file}, sheet {self.spec.name!r}"
        hits = self.columns.get(column)
        if not hits:
            raise InputUnreadable(
                f"column {column!r} not found in the header (row {self.header_row or self.spec.name_row})"
                f"{_closest(column, self.columns)}",
                where,
            )
        if len(hits) > 1:
            from etl.transform.xlsx_values import column_letter

            letters = ", ".join(column_letter(i) for i in hits)
            raise ConfigError(f"column name {column!r} is ambiguous (columns {letters})", where)
        return hits[0]


@dataclass
class SourceData:
    """A source workbook read once: the declared sheets, by alias."""

    path: Path
    sheets: dict[str, SheetData]


def read_source(mapping: CollectionMapping, path: str | Path) -> SourceData:
    """Read the sheets a mapping declares (cell values) and index their rows by table patient id.

    Sheets are found by exact name, columns by header text (whitespace runs collapsed) in any order; a
    column that is not there is an error that suggests the closest names present.
    """
    from etl.transform.xlsx_values import ValueWorkbook

    path = Path(path)
    if mapping.source is None:
        raise ConfigError(f"collection {mapping.dataset} has no source section", str(mapping.path))
    sheets = {}
    with ValueWorkbook(path) as book:
        for alias, spec in mapping.source.sheets.items():
            if spec.name not in book.sheet_names:
                raise InputUnreadable(f"sheet {spec.name!r} not found (sheets: {', '.join(book.sheet_names)})", str(path))
            sheets[alias] = _read_sheet(book.rows(spec.name), spec, mapping.source, path)
    return SourceData(path, sheets)


HEADER_SEARCH = 10  # extra non-blank rows searched for the header when it is not where the mapping says


def _read_sheet(rows: Iterator[tuple[int, tuple[Any, ...]]], spec: SheetSpec, source: SourceSpec, path: Path) -> SheetData:
    """Locate the header, then index the body rows by table patient id.

    The column names are in the ``name_row``-th non-blank row (blank rows above or between header rows do
    not count); if that row lacks the id column, the first of the next few non-blank rows that has it is
    used (an added title line). After it, up to ``header_rows - name_row`` further rows are header rows
    (e.g. code legends) unless their id cell is a patient id.
    """
    where = f"{path}, sheet {spec.name!r}"
    head: list[tuple[int, tuple[Any, ...]]] = []
    for rownum, row in rows:
        if _blank(row):
            continue
        head.append((rownum, row))
        if len(head) >= spec.header_rows + HEADER_SEARCH:
            break
    if not head:
        raise InputUnreadable("sheet is empty", where)
    candidates = [i for i, (_, row) in enumerate(head) if spec.id_column in _header_columns(row)]
    declared = spec.name_row - 1
    if not candidates:
        raise InputUnreadable(
            f"no header row with the id column {spec.id_column!r} (expected in row {spec.name_row}; searched "
            f"the first {len(head)} non-blank rows){_closest(spec.id_column, _header_columns(head[min(declared, len(head) - 1)][1]))}",
            where,
        )
    pos = declared if declared in candidates else candidates[0]
    header_row, header = head[pos]
    if header_row != spec.name_row:
        log.info("%s: column names found in row %d (mapping says row %d)", where, header_row, spec.name_row)
    data = SheetData(spec, _header_columns(header), {}, header_row)
    id_idx = data.index(spec.id_column, str(path))
    rest = head[pos + 1:]
    for _ in range(spec.header_rows - spec.name_row):
        if not rest:
            break
        raw = rest[0][1][id_idx] if id_idx < len(rest[0][1]) else None
        if cell_key(raw) and source.id_match.match(cell_key(raw)):
            break  # a patient row: the header has fewer rows than declared
        rest.pop(0)
    body = itertools.chain(rest, rows)
    for rownum, row in body:
        raw = row[id_idx] if id_idx < len(row) else None
        key = cell_key(raw)
        if not key:
            continue  # blank line (e.g. trailing formatted rows)
        m = source.id_match.match(key)
        if not m:
            raise ValidationFailed(
                f"patient id {key!r} does not match the id rule {source.id_match.pattern!r}",
                f"{path}, sheet {spec.name!r}, column {spec.id_column!r}, row {rownum}",
            )
        pid = source.id_format.format(**m.groupdict())
        if pid in data.rows:
            raise ValidationFailed(
                f"patient id {key!r} appears twice (rows {data.rows[pid][0]} and {rownum})",
                f"{path}, sheet {spec.name!r}",
            )
        data.rows[pid] = (rownum, row)
    return data
