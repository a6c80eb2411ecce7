"""Plain-text rendering shared by the commands that print tables (summary, query, validate)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align_right: Sequence[bool] | None = None) -> str:
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
