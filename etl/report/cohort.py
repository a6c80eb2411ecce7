"""Cohort and Imaging sections: the summary's counts (the paper's Tables 1-2) as charts + tables, and
histograms of the numeric variables.

The counts come from ``etl.use.summary.summarize`` on the same frame `mamamia summary` reads, never from a
second count here; each table cell carries data-var / data-dataset / data-label so the equality is testable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from etl.report import charts
from etl.report.model import Block, Figure, Section, Table, cell, config

NUMBER_STATS = ("n", "missing", "median", "IQR", "min", "max")


def placement(variables: list[str]) -> dict[str, str]:
    """Section of each summary variable: the YAML's placement, else the schema group."""
    from etl.validate.schema import load_schema

    columns = load_schema().columns
    declared = config().get("placement") or {}
    out = {}
    for v in variables:
        if v in declared:
            out[v] = str(declared[v])
        else:
            out[v] = "imaging" if columns.get(v) is not None and columns[v].group == "imaging" else "cohort"
    return out


def summary_block(var: str, summary: dict[str, Any]) -> Block:
    """Chart (one panel per dataset) and the counts table (label x overall + datasets) of one variable."""
    title = (config().get("titles") or {}).get(var, var)
    order = list(summary["overall"].get(var, {}))
    datasets = list(summary["by_dataset"])
    per_ds = {ds: summary["by_dataset"][ds].get(var, {}) for ds in datasets}
    n_all = summary["n_cases"]
    figure = None
    if order:
        source = per_ds if datasets else {"all cases": summary["overall"][var]}
        figure = Figure(charts.category_chart(f"{title} [{var}]", source, order), charts.FMT,
                        f"{title}: cases per value and dataset")
    rows = []
    for label in order:
        n = summary["overall"][var][label]
        row = [cell(label, css="label"),
               cell(f"{n} ({100 * n / max(n_all, 1):.1f}%)", var=var, dataset="overall", label=label, count=n)]
        row += [cell(int(per_ds[ds].get(label, 0)), var=var, dataset=ds, label=label, count=int(per_ds[ds].get(label, 0)))
                for ds in datasets]
        rows.append(row)
    table = Table([var, f"overall (n={n_all})", *[f"{ds} (n={_n_of(summary, ds)})" for ds in datasets]], rows,
                  css="counts")
    return Block(title=f"{title}", figure=figure, table=table, id=f"var-{var}")


def _n_of(summary: dict[str, Any], ds: str) -> int:
    first: dict[str, int] = next(iter(summary["by_dataset"][ds].values()), {})
    return int(sum(first.values()))


def numeric_values(df: pd.DataFrame, spec: dict[str, Any]) -> pd.Series | None:
    """The float values a histogram spec names (a column, an item of a list column, or an expression)."""
    if "expr" in spec:
        try:
            values: Any = df.eval(str(spec["expr"]))
        except Exception:  # a column the expression needs is absent in this input: no histogram
            return None
        values = pd.to_numeric(values, errors="coerce").astype("float64")
        return values.where(np.isfinite(values))  # e.g. a height of 0: no BMI, counted as missing
    col = spec.get("column")
    if col not in df.columns:
        return None
    series = df[col]
    if "item" in spec:
        series = series.map(lambda v: _item(v, int(spec["item"])))
    return pd.to_numeric(series, errors="coerce").astype("float64")


def _item(v: Any, k: int) -> float | None:
    """Element k of a list value ([0.7, 0.7]) or of its published text form ("[0.7, 0.7]")."""
    if isinstance(v, str):
        parts = [p.strip() for p in v.strip().strip("[]").split(",") if p.strip()]
        try:
            return float(parts[k])
        except (IndexError, ValueError):
            return None
    if isinstance(v, (list, tuple, np.ndarray)) and len(v) > k:
        return float(v[k])
    return None


def histogram_block(df: pd.DataFrame, spec: dict[str, Any], summary: dict[str, Any] | None = None) -> Block | None:
    """Histogram per dataset and its table (n, missing, median, IQR, min, max); for the summary's continuous
    variables (age, BMI, follow-up) n, missing, median and IQR are the summary's own numbers."""
    values = numeric_values(df, spec)
    if values is None or values.notna().sum() == 0:
        return None
    name = str(spec.get("name") or spec.get("column"))
    unit = str(spec.get("unit", ""))
    groups = _groups(df, list((summary or {}).get("by_dataset") or {}))
    vals = {ds: values[rows].dropna().to_numpy() for ds, rows in groups.items()}
    missing = {ds: int(values[rows].isna().sum()) for ds, rows in groups.items()}
    title = f"{spec.get('title', name)} ({unit})" if unit else str(spec.get("title", name))
    fig = Figure(charts.histogram_chart(f"{title} [{name}]", unit, vals, missing), charts.FMT,
                 f"Histogram of {name} per dataset")
    known = ((summary or {}).get("continuous") or {}).get(name)
    rows = []
    for ds, rows_mask in [("overall", np.ones(len(df), dtype=bool)), *groups.items()]:
        v = values[rows_mask]
        stats = number_stats(v)
        if known is not None:
            s = known["overall"] if ds == "overall" else known["by_dataset"].get(ds)
            if s and s.get("n"):
                stats[:4] = [s["n"], s["missing"], f"{s['median']:g}", f"{s['q1']:g}-{s['q3']:g}"]
        rows.append([cell(ds, css="label"), *[cell(x, var=name, dataset=ds, stat=k) for k, x in zip(NUMBER_STATS, stats)]])
    table = Table(["dataset", *[f"{s} ({unit})" if s in ("median", "IQR", "min", "max") and unit else s for s in NUMBER_STATS]],
                  rows, css="counts")
    return Block(title=title, figure=fig, table=table, id=f"hist-{name}")


def number_stats(v: pd.Series) -> list[Any]:
    """n, missing, median, IQR (q1-q3), min, max of a numeric series."""
    x = v.dropna().to_numpy(dtype=float)
    if len(x) == 0:
        return [0, int(v.isna().sum()), "", "", "", ""]
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return [len(x), int(v.isna().sum()), _fmt(med), f"{_fmt(q1)}-{_fmt(q3)}", _fmt(x.min()), _fmt(x.max())]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _groups(df: pd.DataFrame, order: list[str]) -> dict[str, np.ndarray]:
    """Row masks per dataset in the summary's dataset order (all rows when there is no dataset column)."""
    if "dataset" not in df.columns or not order:
        return {"all cases": np.ones(len(df), dtype=bool)}
    ds = df["dataset"].astype("string")
    return {d: (ds == d).fillna(False).to_numpy(dtype=bool) for d in order}


def sections(df: pd.DataFrame, summary: dict[str, Any]) -> tuple[Section, Section]:
    """(Cohort, Imaging): summary variables by placement, then the declared histograms."""
    where = placement(list(summary["overall"]))
    hist = config().get("histograms") or {}
    out = []
    for sid, title, intro in (
        ("cohort", "Cohort", "Clinical and demographic variables per dataset, in the layout of the paper's "
         "Tables 1-2. Bars count cases per value (the grey hatched bar counts missing values); the table under "
         "each chart gives the same counts overall and per dataset, as `mamamia summary` prints them."),
        ("imaging", "Imaging", "Acquisition variables per dataset (from the DICOM headers of the shipped "
         "images): manufacturer, field strength, view, phases, and the voxel size distributions."),
    ):
        sec = Section(sid, title, intro)
        if sid == "cohort" and summary.get("labels") == "normalized":
            changed = summary.get("normalized_values") or {}
            sec.notes.append("Labels are counted after the spelling normalization of mappings/normalize.yaml, as "
                             "`mamamia summary` does by default (values changed: "
                             + (", ".join(f"{c} {n}" for c, n in changed.items()) or "none")
                             + "); `mamamia summary --raw` counts the published spellings.")
        for var in summary["overall"]:
            if where.get(var) == sid:
                sec.blocks.append(summary_block(var, summary))
        for spec in hist.get(sid) or []:
            block = histogram_block(df, spec, summary)
            if block is not None:
                sec.blocks.append(block)
            else:
                sec.notes.append(f"No histogram of {spec.get('name') or spec.get('column')}: no values in this input.")
        out.append(sec)
    return out[0], out[1]
