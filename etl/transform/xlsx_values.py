"""Cell values of an .xlsx workbook, read straight from its XML parts with the standard library.

Source spreadsheets are read for their values only. openpyxl spends most of its time on the stylesheet
(the Duke workbook declares ~30 000 cell formats: ~1.5 s before the first cell), so this reader parses just
the workbook, the shared strings and the requested worksheet, streaming rows. Cached results of formula
cells are returned, never formulas (a formula saved without a result comes back as
:class:`UncomputedFormula`, a text no code map or number rule accepts, so a rule that uses the cell fails
naming it instead of reading it as blank); date cells come back as Excel serial day numbers (no mapping
reads a date); numbers are ``int`` when the stored text is an integer, else ``float``, as openpyxl
returns them.

Every XML part is parsed with ``defusedxml`` (as openpyxl does when it is installed): a workbook whose XML
declares entities or a DTD, e.g. an entity-expansion "billion laughs" bomb, is refused with one line naming
the file before anything is expanded.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zipfile

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as _fromstring
from defusedxml.ElementTree import iterparse as _iterparse
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from etl.errors import InputUnreadable

_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_DOC_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_READ_ERRORS = (zipfile.BadZipFile, KeyError, ET.ParseError, OSError, ValueError, IndexError, StopIteration)

Row = tuple[int, tuple[Any, ...]]


def column_letter(index: int) -> str:
    """Spreadsheet column letter of a 0-based index (0 -> A, 26 -> AA)."""
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


def column_index(ref: str) -> int:
    """0-based column of a cell reference such as ``BH12``."""
    n = 0
    for ch in ref:
        if not ch.isalpha():
            break
        n = n * 26 + (ord(ch.upper()) - 64)
    return n - 1


class ValueWorkbook:
    """``with ValueWorkbook(path) as book: book.sheet_names; book.rows("Data")``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputUnreadable("source file not found", str(self.path))
        try:
            self._zip = zipfile.ZipFile(self.path)
            self._sheets, strings_part = _workbook_parts(self._zip)
            self._strings = _shared_strings(self._zip, strings_part)
        except _READ_ERRORS as exc:
            raise self._unreadable(exc) from exc

    def __enter__(self) -> ValueWorkbook:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._zip.close()

    @property
    def sheet_names(self) -> list[str]:
        return list(self._sheets)

    def part(self, sheet: str) -> str:
        """The zip member holding a sheet's XML (for tools that edit one cell in place)."""
        return self._sheets[sheet]

    def rows(self, sheet: str) -> Iterator[Row]:
        """(spreadsheet row number, cell values) for every row present in the sheet, in order."""
        try:
            with self._zip.open(self._sheets[sheet]) as fh:
                yield from _sheet_rows(fh, self._strings)
        except _READ_ERRORS as exc:
            raise self._unreadable(exc, sheet) from exc

    def _unreadable(self, exc: BaseException, sheet: str | None = None) -> InputUnreadable:
        where = f"{self.path}, sheet {sheet!r}" if sheet else str(self.path)
        if isinstance(exc, DefusedXmlException):
            return InputUnreadable(f"refused: the workbook's XML declares entities or a DTD ({type(exc).__name__}; "
                                   f"an entity-expansion 'billion laughs' bomb?); nothing was expanded", where)  # fmt: skip
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return InputUnreadable(f"not a readable xlsx workbook: {text}", where)


def _resolve(base_dir: str, target: str) -> str:
    if target.startswith("/"):
        return target.lstrip("/")
    parts: list[str] = [p for p in base_dir.split("/") if p]
    for piece in target.split("/"):
        if piece == "..":
            parts.pop()
        elif piece not in ("", "."):
            parts.append(piece)
    return "/".join(parts)


def _workbook_parts(zf: zipfile.ZipFile) -> tuple[dict[str, str], str | None]:
    """(sheet name -> zip member, in workbook order; the shared-strings member or None)."""
    root_rels = _fromstring(zf.read("_rels/.rels"))
    book = next(r.get("Target", "") for r in root_rels.iter(f"{_PKG_REL}Relationship")
                if r.get("Type", "").endswith("/officeDocument"))
    book = _resolve("", book)
    book_dir, _, book_name = book.rpartition("/")
    rels_name = f"{book_dir}/_rels/{book_name}.rels" if book_dir else f"_rels/{book_name}.rels"
    rels = {r.get("Id"): r for r in _fromstring(zf.read(rels_name)).iter(f"{_PKG_REL}Relationship")}
    sheets: dict[str, str] = {}
    for sheet in _fromstring(zf.read(book)).iter(f"{_MAIN}sheet"):
        rel = rels.get(sheet.get(f"{_DOC_REL}id"))
        if rel is not None and rel.get("Type", "").endswith("/worksheet"):
            sheets[str(sheet.get("name"))] = _resolve(book_dir, rel.get("Target", ""))
    strings = next((_resolve(book_dir, r.get("Target", "")) for r in rels.values()
                    if r.get("Type", "").endswith("/sharedStrings")), None)
    if strings is None and "xl/sharedStrings.xml" in zf.namelist():
        strings = "xl/sharedStrings.xml"  # some writers omit the relationship
    return sheets, strings


def _shared_strings(zf: zipfile.ZipFile, member: str | None) -> list[str]:
    if member is None:
        return []
    out = []
    for si in _fromstring(zf.read(member)).iter(f"{_MAIN}si"):
        texts = [si.findtext(f"{_MAIN}t") or ""] if si.find(f"{_MAIN}t") is not None else []
        texts += [r.findtext(f"{_MAIN}t") or "" for r in si.iter(f"{_MAIN}r")]  # rich-text runs, not phonetic rPh
        out.append("".join(texts))
    return out


class UncomputedFormula(str):
    """A formula cell saved without its result (e.g. written by a script, never opened in a spreadsheet
    program). Kept as a value, not read as blank, so that a rule that uses the cell fails naming it."""

    def __new__(cls, formula: str | None) -> UncomputedFormula:
        return super().__new__(cls, f"={formula} (formula without a saved result)" if formula else "(formula without a saved result)")


def _cell_value(cell: ET.Element, strings: list[str]) -> Any:
    kind = cell.get("t", "n")
    if kind == "inlineStr":
        node = cell.find(f"{_MAIN}is")
        return "".join(t.text or "" for t in node.iter(f"{_MAIN}t")) if node is not None else None
    text = cell.findtext(f"{_MAIN}v")
    if not text and kind != "str":  # an empty text result is saved as t="str" with an empty <v/>
        formula = cell.find(f"{_MAIN}f")
        if formula is not None:  # no result saved (openpyxl and scripts write formulas so)
            return UncomputedFormula(formula.text)
    if not text:
        return None  # no value, or an empty <v/> as some writers (openpyxl) leave on styled blank cells
    if kind == "s":
        return strings[int(text)]
    if kind in ("str", "e", "d"):
        return text
    if kind == "b":
        return text == "1"
    try:
        return int(text)
    except ValueError:
        return float(text)


def _sheet_rows(fh: Any, strings: list[str]) -> Iterator[Row]:
    rownum = 0
    for _, elem in _iterparse(fh, events=("end",)):
        if elem.tag != f"{_MAIN}row":
            continue
        rownum = int(elem.get("r") or rownum + 1)
        values: list[Any] = []
        for cell in elem.iter(f"{_MAIN}c"):
            ref = cell.get("r")
            col = column_index(ref) if ref else len(values)
            if col > len(values):
                values.extend([None] * (col - len(values)))
            value = _cell_value(cell, strings)
            if col == len(values):
                values.append(value)
            else:
                values[col] = value
        elem.clear()
        yield rownum, tuple(values)
