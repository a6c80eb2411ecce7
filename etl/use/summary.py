"""Counts in the layout of the MAMA-MIA Sci Data paper's Tables 1 and 2 (`mamamia summary`).

Which variables, and how age is binned, is declared in the schema YAML (section ``summary``). Labels are
counted after the value normalization of ``mappings/normalize.yaml`` (the spellings a build writes), unless
the caller asks for the published spellings: five ways of writing "pre" must not read as five categories.
Continuous variables (age, BMI, follow-up) get a median and interquartile range as well as any bins.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from etl.validate.schema import Schema, load_schema

MISSING = "missing"

# Continuous variables: median and IQR. ``bmi`` is computed as weight / patient_size^2 where both are known
# (patient_size is in metres). The schema's ``summary.continuous`` list, when present, overrides this.
CONTINUOUS: tuple[dict[str, str], ...] = (
    {"name": "age", "unit": "years"},
    {"name": "bmi", "unit": "kg/m^2", "from": "weight / patient_size^2"},
    {"name": "days_to_follow_up", "unit": "days"},
)


def normalize_labels(df: pd.DataFrame, path: str | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """The table with the text normalization of ``mappings/normalize.yaml`` applied, and the number of
    values changed per column (what ``summary --normalized`` reports)."""
    import logging

    from etl.transform.clinical import Normalizer, normalize_counts

    normalizer = Normalizer.load(path)
    quiet = logging.getLogger("etl.transform.clinical")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # the per-rule log lines are for builds; the summary reports counts
    try:
        out, records = normalizer.apply(df)
    finally:
        quiet.setLevel(level)
    return out, normalize_counts(records)


def continuous_stats(df: pd.DataFrame, schema: Schema | None = None) -> dict[str, Any]:
    """``{VAR: {"unit", "overall": {n, missing, median, q1, q3}, "by_dataset": {DS: {...}}}}``."""
    schema = schema or load_schema()
    specs = schema.summary.get("continuous") or CONTINUOUS
    out: dict[str, Any] = {}
    datasets = _order("dataset", df["dataset"].astype("string").dropna(), schema) if "dataset" in df.columns else []
    for spec in specs:
        spec = spec if isinstance(spec, dict) else {"name": str(spec)}
        values = _continuous(df, spec["name"])
        if values is None:
            continue
        unit = spec.get("unit") or (schema.columns[spec["name"]].unit if spec["name"] in schema.columns else None)
        entry: dict[str, Any] = {"unit": unit, "overall": _stats(values), "by_dataset": {}}
        for ds in datasets:
            rows = (df["dataset"] == ds).fillna(False).to_numpy(dtype=bool)
            entry["by_dataset"][ds] = _stats(values[rows])
        out[spec["name"]] = entry
    return out


def _continuous(df: pd.DataFrame, name: str) -> pd.Series | None:
    if name == "bmi":
        if not {"weight", "patient_size"} <= set(df.columns):
            return None
        weight = pd.to_numeric(df["weight"], errors="coerce").astype("float64")
        size = pd.to_numeric(df["patient_size"], errors="coerce").astype("float64")
        return (weight / size.where(size > 0) ** 2).reset_index(drop=True)
    if name not in df.columns:
        return None
    return pd.to_numeric(df[name], errors="coerce").astype("float64").reset_index(drop=True)


def _stats(values: pd.Series) -> dict[str, Any]:
    known = values.dropna()
    if known.empty:
        return {"n": 0, "missing": int(len(values)), "median": None, "q1": None, "q3": None}
    q1, median, q3 = (float(x) for x in known.quantile([0.25, 0.5, 0.75]))
    return {"n": int(len(known)), "missing": int(len(values) - len(known)),
            "median": round(median, 2), "q1": round(q1, 2), "q3": round(q3, 2)}


def summarize(df: pd.DataFrame, schema: Schema | None = None, normalized: bool = True) -> dict[str, Any]:
    """``{"n_cases", "labels", "overall": {VAR: {LABEL: COUNT}}, "by_dataset": {DATASET: {VAR: {LABEL: COUNT}}},
    "continuous": {VAR: {unit, overall: {n, missing, median, q1, q3}, by_dataset}}}``.

    ``normalized`` (default): labels after ``mappings/normalize.yaml``; ``labels`` says which, and
    ``normalized_values`` how many values per column the normalization changed."""
    schema = schema or load_schema()
    changed: dict[str, int] = {}
    if normalized:
        df, changed = normalize_labels(df)
    variables = [v for v in schema.summary.get("variables", []) if v in df.columns]
    labels = {v: _labels(df[v], v, schema) for v in variables}
    out: dict[str, Any] = {"n_cases": int(len(df)), "labels": "normalized" if normalized else "raw",
                           "overall": {}, "by_dataset": {}}
    if normalized:
        out["normalized_values"] = changed
    for v in variables:
        out["overall"][v] = _count(labels[v], _order(v, labels[v], schema))
    if "dataset" in df.columns:
        datasets = _order("dataset", df["dataset"].astype("string").dropna(), schema)
        for ds in datasets:
            rows = (df["dataset"] == ds).fillna(False).to_numpy(dtype=bool)
            out["by_dataset"][ds] = {v: _count(labels[v][rows], _order(v, labels[v], schema)) for v in variables}
    out["continuous"] = continuous_stats(df, schema)
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
    continuous = {k: v for k, v in summary.get("continuous", {}).items()
                  if (variables is None or k in variables) and v["overall"]["n"]}
    if continuous:
        rows = []
        for var, entry in continuous.items():
            unit = f" ({entry['unit']})" if entry.get("unit") else ""
            rows.append([f"{var}{unit}", _median_iqr(entry["overall"]),
                         *(_median_iqr(entry["by_dataset"].get(d, {})) for d in datasets)])
        blocks.append(render_table(["median [IQR], n", "overall", *datasets], rows,
                                   [False] + [True] * (len(datasets) + 1)))
    if variables is None and summary.get("labels"):
        changed = summary.get("normalized_values") or {}
        if summary["labels"] == "normalized":
            detail = ("values changed: " + ", ".join(f"{c} {n}" for c, n in changed.items())) if changed \
                else "no value needed it"
            blocks.append(f"labels normalized by mappings/normalize.yaml ({detail}); --raw for the published spellings")
        else:
            blocks.append("labels as published (--raw); the default normalizes them by mappings/normalize.yaml")
    return "\n\n".join(blocks) + "\n"


def _median_iqr(stats: dict[str, Any]) -> str:
    if not stats or not stats.get("n"):
        return ""
    def g(x: float) -> str:  # one decimal is enough to read; the JSON keeps two
        return f"{round(float(x), 1):g}"

    return f"{g(stats['median'])} [{g(stats['q1'])}-{g(stats['q3'])}], {stats['n']}"


def _n(summary: dict[str, Any], ds: str) -> int:
    return sum(summary["by_dataset"][ds].get("dataset", {}).values()) if "dataset" in summary["overall"] else 0
