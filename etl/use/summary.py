"""Counts in the layout of the MAMA-MIA Sci Data paper's Tables 1 and 2 (`mamamia summary`).

Which variables, and how age is binned, is declared in the schema YAML (section ``summary``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from etl.validate.schema import Schema, load_schema

MISSING = "missing"


def summarize(df: pd.DataFrame, schema: Schema | None = None) -> dict[str, Any]:
    """``{"n_cases", "overall": {VAR: {LABEL: COUNT}}, "by_dataset": {DATASET: {VAR: {LABEL: COUNT}}}}``."""
    schema = schema or load_schema()
    variables = [v for v in schema.summary.get("variables", []) if v in df.columns]
    labels = {v: _labels(df[v], v, schema) for v in variables}
    out: dict[str, Any] = {"n_cases": int(len(df)), "overall": {}, "by_dataset": {}}
    for v in variables:
        out["overall"][v] = _count(labels[v], _order(v, labels[v], schema))
    if "dataset" in df.columns:
        datasets = _order("dataset", df["dataset"].astype("string").dropna(), schema)
        for ds in datasets:
            rows = (df["dataset"] == ds).fillna(False).to_numpy(dtype=bool)
            out["by_dataset"][ds] = {v: _count(labels[v][rows], _order(v, labels[v], schema)) for v in variables}
    return out


def _labels(col: pd.Series, name: str, schema: Schema) -> pd.Series:
    bins = (schema.summary.get("bins") or {}).get(name)
    if bins:
        num = pd.to_numeric(col, errors="coerce").astype("float64")
        lab = pd.Series(MISSING, index=col.index, dtype=object)
        for b in bins:
            sel = num.notna()
            if b.get("min") is not None:
                sel &= num >= b["min"]
            if b.get("max") is not None:
                sel &= num < b["max"]
            lab[sel] = b["label"]
        return lab
    spec = schema.columns.get(name)
    if spec is not None and spec.allowed is not None and set(spec.allowed) == {0, 1}:
        num = pd.to_numeric(col, errors="coerce")
        return pd.Series([MISSING if pd.isna(v) else ("yes" if v == 1 else "no") for v in num], index=col.index, dtype=object)
    return pd.Series([_label(v) for v in col], index=col.index, dtype=object)


def _label(v: Any) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return MISSING
    if isinstance(v, float):
        return f"{v:g}"
    return str(v).strip()


def _order(name: str, labels: pd.Series, schema: Schema) -> list[str]:
    """Label order: bins, then no/yes, then the schema's allowed values, then the rest sorted; missing last."""
    present = set(labels.dropna().astype(str))
    bins = (schema.summary.get("bins") or {}).get(name)
    spec = schema.columns.get(name)
    if bins:
        first = [b["label"] for b in bins]
    elif spec is not None and spec.allowed is not None and set(spec.allowed) == {0, 1}:
        first = ["no", "yes"]
    elif spec is not None and spec.allowed is not None:
        first = [str(a) for a in spec.allowed]
    else:
        first = []
    rest = sorted(present - set(first) - {MISSING}, key=_natural)
    return [x for x in first if x in present] + rest + ([MISSING] if MISSING in present else [])


def _natural(s: str) -> tuple[int, float, str]:
    try:
        return (0, float(s), s)
    except ValueError:
        return (1, 0.0, s)


def _count(labels: pd.Series, order: list[str]) -> dict[str, int]:
    counts = labels.value_counts()
    return {lab: int(counts[lab]) for lab in order if lab in counts.index and counts[lab] > 0}


def summary_text(summary: dict[str, Any], variables: list[str] | None = None) -> str:
    """Readable tables: one per variable (all, or ``variables``), rows = labels, columns = overall and each dataset."""
    from etl.use.textformat import render_table

    datasets = list(summary["by_dataset"])
    blocks = [f"{summary['n_cases']} cases" + (f" ({', '.join(f'{d} {_n(summary, d)}' for d in datasets)})" if datasets else "")]
    for var, counts in summary["overall"].items():
        if variables is not None and var not in variables:
            continue
        rows = []
        for label, n in counts.items():
            row = [label, f"{n} ({100 * n / max(summary['n_cases'], 1):.1f}%)"]
            row += [summary["by_dataset"][d].get(var, {}).get(label, 0) for d in datasets]
            rows.append(row)
        headers = [var, "overall", *datasets]
        blocks.append(render_table(headers, rows, [False] + [True] * (len(headers) - 1)))
    return "\n\n".join(blocks) + "\n"


def _n(summary: dict[str, Any], ds: str) -> int:
    return sum(summary["by_dataset"][ds].get("dataset", {}).values()) if "dataset" in summary["overall"] else 0
