"""Plain-text rendering shared by the commands that print tables (summary, query, validate)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align_right: Sequence[bool] | None = None) -> str:
    """An aligned plain-text table: readable in a terminal, in a log file and in a diff."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    right = list(align_right) if align_right is not None else [False] * len(headers)

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def frame_to_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready records: missing values become null, numpy scalars plain Python."""
    return json.loads(df.to_json(orient="records", date_format="iso", force_ascii=False))


def shorten_paths(df: pd.DataFrame, columns: Sequence[str], root: Any) -> pd.DataFrame:
    """Path columns for a terminal table: relative to ``root``; a ';'-joined list of phase files becomes its
    first file and ``+N`` more (full paths stay in CSV/JSON output)."""
    import os

    def short(value: Any) -> Any:
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            return value
        parts = [p for p in (value if isinstance(value, (list, tuple)) else str(value).split(";")) if p]
        if not parts:
            return ""
        rel = [os.path.relpath(p, root) if os.path.isabs(p) and str(p).startswith(str(root)) else str(p) for p in parts]
        return rel[0] + (f" +{len(rel) - 1}" if len(rel) > 1 else "")

    out = df.copy()
    for c in columns:
        out[c] = out[c].map(short)
    return out
