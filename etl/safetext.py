"""Text that a spreadsheet program would run as a formula, written so that it stays text.

A value from a DICOM header or a source spreadsheet such as ``=HYPERLINK("http://...","x")`` or ``=1+1``
is data, but Excel and LibreOffice evaluate a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and a
tab or carriage return in front of one) when they open a CSV file or meet a formula cell in an xlsx
(CSV/formula injection). openpyxl itself turns every ``str`` starting with ``=`` into a formula cell.

Every writer of a spreadsheet-readable output goes through here:

* xlsx: ``protect_sheet`` makes each such cell a string cell (never a formula) with Excel's ``quotePrefix``
  set, so that editing the cell does not turn it into a formula either; the value is unchanged;
* CSV: ``csv_safe_frame`` / ``csv_cell`` prefix such text with a single quote, as OWASP recommends (the
  value then reads ``'=1+1``: a program shows it as text instead of running it).

Numbers are never touched: a number cell is not text, and text that is just a number (``-5``, ``+1.5e3``)
is not a formula either.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def is_formula_like(value: Any) -> bool:
    """True for text a spreadsheet program could evaluate: it starts with a formula prefix and is not a number."""
    return (
        isinstance(value, str)
        and value[:1] in FORMULA_PREFIXES
        and not _NUMBER.fullmatch(value)
    )


def csv_cell(value: Any) -> Any:
    """The value as a CSV cell may carry it: formula-like text gets a leading single quote."""
    return "'" + value if is_formula_like(value) else value


def formula_like_mask(col: pd.Series) -> pd.Series:
    """Per row: True where a text column holds formula-like text (vectorized through the distinct values)."""
    if not (col.dtype == object or isinstance(col.dtype, pd.StringDtype)):
        return pd.Series(False, index=col.index)
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    flags = [is_formula_like(u) for u in uniques]
    return pd.Series([c >= 0 and flags[c] for c in codes], index=col.index, dtype=bool)


def csv_safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose formula-like text cells and header names are quote-prefixed for CSV."""
    out = df.copy()
    for i, name in enumerate(df.columns):
        col = df.iloc[:, i]
        mask = formula_like_mask(col)
        if mask.any():
            fixed = col.astype(object).where(~mask, "'" + col[mask].astype(str))
            out.isetitem(i, (fixed.astype(col.dtype) if isinstance(col.dtype, pd.StringDtype) else fixed).array)
    out.columns = [csv_cell(c) for c in df.columns]
    return out


def protect_sheet(ws: Any) -> int:
    """Make every formula-like text cell of an openpyxl worksheet a plain string cell; how many there were.

    Call it after the cells are filled and before the workbook is saved (``pandas.ExcelWriter`` sheets are
    still openpyxl worksheets inside the ``with`` block)."""
    n = 0
    for row in ws.iter_rows():
        for cell in row:
            if cell.data_type in ("f", "s") and is_formula_like(cell.value):
                cell.data_type = "s"  # openpyxl made "=..." a formula; the writer then emits it as text
                cell.quotePrefix = True
                n += 1
    return n


__all__ = ["FORMULA_PREFIXES", "csv_cell", "csv_safe_frame", "formula_like_mask", "is_formula_like", "protect_sheet"]
