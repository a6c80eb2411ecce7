"""Splits section: how the train/test split and the cross-validation folds fall in each stratum.

Strata are the split stage's own keys (``etl.split.stratum_keys``: dataset x pcr x tumour subtype), pooled
the way the build pooled them (provenance ``split.merged_strata``), so the balance shown is the balance
the split was drawn for.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from etl.report import charts
from etl.report.model import Block, Figure, Section, Table, cell
from etl.report.source import ReportSource


def _parts(sp: pd.DataFrame) -> list[str]:
    folds = sorted(int(f) for f in sp["fold"].dropna().unique())
    return ["test", *[f"fold {f}" for f in folds]] + (["train (no fold)"] if ((sp["split"] == "train") & sp["fold"].isna()).any() else [])


def _part(split: Any, fold: Any) -> str:
    if split == "test":
        return "test"
    return "train (no fold)" if fold is pd.NA or pd.isna(fold) else f"fold {int(fold)}"


def section(src: ReportSource) -> Section | None:
    from etl.split import stratum_keys

    sp = src.splits
    if sp is None or not len(sp):
        return None
    df = src.table
    split_info = src.provenance.get("split") or {}
    defn_split = (src.provenance.get("definition") or {}).get("split") or {}
    test_fraction = split_info.get("test_fraction", defn_split.get("test_fraction"))
    merges: dict[str, str] = dict(split_info.get("merged_strata") or {})
    try:
        keys = stratum_keys(df)
    except Exception:  # columns the split stratifies on are absent: balance per dataset only
        keys = df["dataset"].astype(str) if "dataset" in df.columns else pd.Series("all cases", index=df.index)
    strata = pd.DataFrame({"patient_id": df["patient_id"].astype(str),
                           "stratum": [merges.get(k, k) for k in keys.astype(str)],
                           "dataset": df["dataset"].astype(str) if "dataset" in df.columns else "all cases"})
    m = strata.merge(sp.assign(patient_id=sp["patient_id"].astype(str)), on="patient_id", how="left")
    m["part"] = [_part(s, f) if isinstance(s, str) else "no split" for s, f in zip(m["split"], m["fold"])]
    parts = _parts(sp) + (["no split"] if (m["part"] == "no split").any() else [])
    sec = Section("splits", "Splits",
                  f"Train/test split and {len(parts) - 1 - ('no split' in parts)} cross-validation folds over the "
                  "training cases, per stratum (dataset | pCR | tumour subtype; small strata pooled as `*`). "
                  "Each bar is one stratum's cases: the hatched part is the test share, the others the folds.")
    blocks = []
    for by, label in (("dataset", "dataset"), ("stratum", "stratum")):
        rows_data = []
        for key, grp in m.groupby(by, sort=True):
            c = grp["part"].value_counts()
            rows_data.append((str(key), {p: int(c.get(p, 0)) for p in parts}))
        fig = charts.split_chart(f"Test and fold shares per {label}", rows_data, parts,
                                 float(test_fraction) if test_fraction is not None else None)
        rows = [[cell(key, css="label"), cell(sum(c.values())),
                 *[cell(c[p], by=by, key=key, part=p, count=c[p]) for p in parts],
                 cell(f"{100 * c['test'] / max(sum(c.values()), 1):.0f}%")] for key, c in rows_data]
        blocks.append(Block(title=f"Per {label}", figure=Figure(fig, charts.FMT, f"Split shares per {label}"),
                            table=Table([label, "cases", *parts, "test share"], rows, css="counts")))
    sec.blocks = blocks
    if merges:
        sec.notes.append("Pooled strata: " + "; ".join(f"{k} -> {v}" for k, v in sorted(merges.items())[:20])
                         + (f" (and {len(merges) - 20} more)" if len(merges) > 20 else ""))
    return sec
