"""Segmentations section: mask volumes, automatic vs expert agreement, visual ratings, expert corrections,
and the worst cases by Dice with their pictures (the paper's Figures 6-7).

Reads only what the release ships (ARCHITECTURE.md, "Release directory"): ``segmentation_qc.parquet``
(volumes, Dice / HD95 / MSD in mm from ``etl.segment.metrics``), ``segmentation_quality.csv`` (ratings per
case and rater, the review store's export) and ``segmentations/corrections.parquet`` (what the experts
changed, ``etl.review.corrections``). Each absent file leaves its part out, and the section says which.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from etl.plotstyle import CYCLE, OKABE_ITO
from etl.report import charts
from etl.report.model import Block, Figure, Section, Table, cell, config
from etl.report.source import QC, RATINGS, ReportSource

WORST_PX = 220


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    """A QC column as floats (NaN where missing; all NaN when the column is absent)."""
    if name not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype="float64")
    return pd.to_numeric(df[name], errors="coerce").astype("float64")


def _stat(v: np.ndarray) -> str:
    if not len(v):
        return ""
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return f"{med:.3g} [{q1:.3g}-{q3:.3g}]"


def read_qc(src: ReportSource) -> pd.DataFrame | None:
    p = src.file(QC)
    if p is None:
        return None
    try:
        qc = pd.read_parquet(p)
    except (OSError, ValueError) as exc:
        from etl.errors import InputUnreadable

        raise InputUnreadable(f"segmentation QC unreadable: {str(exc)[:160]}", QC) from exc
    if "patient_id" not in qc.columns:
        return None
    qc = qc.copy()
    qc["patient_id"] = qc["patient_id"].astype(str)
    return qc


def read_ratings(src: ReportSource, notes: list[str]) -> pd.DataFrame | None:
    """Latest score per (case, rater) (``etl.review.store.read_ratings``: the review export's reader)."""
    from etl.errors import EtlError
    from etl.review.store import read_ratings as read

    p = src.file(RATINGS)
    if p is None:
        return None
    try:
        df = read(p).astype({"patient_id": str, "rater": str, "score": str})
    except EtlError as exc:  # verify names the bad row too; the card says why the ratings are missing
        notes.append(f"{RATINGS} not used: {exc.what}")
        return None
    return df.sort_values(["patient_id", "rater"], kind="mergesort", ignore_index=True)


def case_quality(ratings: pd.DataFrame) -> dict[str, str]:
    """One class per case: the most frequent latest score among its raters, a tie going to the worse class."""
    from etl.review.store import SCORES

    rank = {s: i for i, s in enumerate(SCORES)}
    out = {}
    for pid, grp in ratings.groupby("patient_id", sort=True):
        counts = grp["score"].value_counts()
        out[str(pid)] = max(counts.index, key=lambda s: (int(counts[s]), rank[s]))
    return out


def kappa_block(ratings: pd.DataFrame) -> Block:
    """Cohen's kappa for each pair of raters on the cases both rated (``etl.review.agreement``: four classes,
    and good vs needs correction)."""
    from etl.review.agreement import agreement

    result = agreement(ratings)
    block = Block(title="Agreement between raters (Cohen's kappa)")
    rows = [[cell(f"{p['rater_a']} vs {p['rater_b']}", css="label"), cell(p["n_cases"]),
             cell(_kappa(p["kappa_4class"]), pair=f"{p['rater_a']}|{p['rater_b']}", kappa="4class"),
             cell(_kappa(p["kappa_binary"]), pair=f"{p['rater_a']}|{p['rater_b']}", kappa="binary")]
            for p in result["pairs"] if p["n_cases"]]
    if rows:
        block.table = Table(["raters", "cases rated by both", "kappa, 4 classes", "kappa, good vs needs correction"],
                            rows, css="counts")
        block.notes.append("Kappa: agreement beyond chance (1 = perfect, 0 = chance level; MAMA-MIA's two "
                           "radiologists: 0.39 on four classes, 0.53 binary); undefined when both raters used one class.")
    else:
        block.notes.append(f"No case was rated by two raters ({len(result['raters'])} rater(s)): no kappa.")
    return block


def _kappa(v: float | None) -> str:
    return "undefined" if v is None else f"{v:.2f}"


def section(src: ReportSource) -> tuple[Section | None, list[str]]:
    """The section (None when the input has no segmentation data) and notes on what is absent."""
    absent: list[str] = []
    qc = read_qc(src)
    if qc is None:
        absent.append(f"{QC} (volumes, Dice, HD95)")
    problems: list[str] = []
    ratings = read_ratings(src, problems)
    if ratings is None and not problems:
        absent.append(f"{RATINGS} (visual ratings, kappa)")
    corrections = None
    corrections_name, corrections_file = src.corrections()
    if corrections_file is not None:
        corrections = pd.read_parquet(corrections_file)
        if "current" in corrections.columns:  # a staged table keeps superseded imports; a release only current rows
            from etl.review.corrections import current_corrections

            corrections = current_corrections(corrections)
    else:
        absent.append(f"{corrections_name} (expert corrections)")
    if qc is None and ratings is None and corrections is None:
        return None, absent
    sec = Section("segmentations", "Segmentations",
                  "Automatic (model) masks against the expert masks: volumes, overlap (Dice, 1 = identical) and "
                  "boundary distance (HD95 in mm, 0 = identical), overall, per dataset and per visual quality class.")
    datasets = src.table.set_index(src.table["patient_id"].astype(str))["dataset"].astype(str).to_dict() \
        if "dataset" in src.table.columns else {}
    quality = case_quality(ratings) if ratings is not None and len(ratings) else {}
    if qc is not None:
        qc["dataset"] = qc["patient_id"].map(datasets).fillna("unknown")
        sec.blocks.append(_volumes(qc))
        sec.blocks += _agreement(qc, quality)
        sec.blocks.append(_worst(src, qc))
    if ratings is not None:
        counts = ratings["score"].value_counts()
        stale = int((ratings["stale"].astype(str).str.lower() == "true").sum()) if "stale" in ratings.columns else 0
        from etl.review.store import SCORES

        sec.blocks.append(Block(title="Visual ratings", table=Table(
            ["score", "ratings", "cases (class)"],
            [[cell(s, css="label"), cell(int(counts.get(s, 0)), score=s),
              cell(sum(1 for q in quality.values() if q == s))] for s in SCORES], css="counts"),
            notes=[f"{len(ratings)} latest ratings of {ratings['patient_id'].nunique()} cases by "
                   f"{ratings['rater'].nunique()} rater(s); a case's class is its most frequent score (ties: the worse)."
                   + (f" {stale} rating(s) are stale (the released automatic mask is not the one rated)." if stale else "")]))
        sec.blocks.append(kappa_block(ratings))
    if corrections is not None:
        sec.blocks.append(_corrections(corrections))
    for a in absent:
        sec.notes.append(f"Not in this input: {a}.")
    sec.notes += problems
    return sec, absent


def _volumes(qc: pd.DataFrame) -> Block:
    per_ds: dict[str, dict[str, np.ndarray]] = {}
    for ds, grp in qc.groupby("dataset", sort=True):
        per_ds[str(ds)] = {
            "automatic": _column(grp, "mask_volume_mm3").dropna().to_numpy(float) / 1000.0,
            "expert": _column(grp, "expert_volume_mm3").dropna().to_numpy(float) / 1000.0,
        }
    fig = charts.volume_chart("Mask volume per dataset", per_ds)
    rows = [[cell(ds, css="label"), cell(len(v["automatic"])), cell(_stat(v["automatic"])), cell(len(v["expert"])),
             cell(_stat(v["expert"]))] for ds, v in per_ds.items()]
    return Block(title="Mask volumes", figure=Figure(fig, charts.FMT, "Mask volumes per dataset"),
                 table=Table(["dataset", "automatic masks", "automatic cm³ median [IQR]", "expert masks",
                              "expert cm³ median [IQR]"], rows, css="counts"))


def _agreement(qc: pd.DataFrame, quality: dict[str, str]) -> list[Block]:
    if "dice" not in qc.columns:
        return [Block(title="Automatic vs expert", notes=["No Dice column in the QC table."])]
    both = qc[pd.to_numeric(qc["dice"], errors="coerce").notna()].copy()
    if both.empty:
        return [Block(title="Automatic vs expert", notes=["No case has both an automatic and an expert mask."])]
    both["dice"] = _column(both, "dice")
    both["hd95_mm"] = _column(both, "hd95_mm")
    groups: list[tuple[str, pd.DataFrame]] = [("all", both)]
    groups += [(str(ds), g) for ds, g in both.groupby("dataset", sort=True)]
    colours = [OKABE_ITO["black"]] + [charts.dataset_colour(ds, i) for i, (ds, _) in enumerate(groups[1:])]
    blocks = []
    for title, frames, cols in (("per dataset", groups, colours), ("per visual quality class", _by_quality(both, quality), CYCLE)):
        if not frames:
            continue
        fig = charts.agreement_chart(f"Automatic vs expert masks {title}",
                                     [(n, g["dice"].to_numpy(), g["hd95_mm"].to_numpy()) for n, g in frames], cols)
        rows = [[cell(n, css="label"), cell(len(g), group=n, count=len(g)), cell(_stat(g["dice"].to_numpy())),
                 cell(_stat(g["hd95_mm"].dropna().to_numpy()))] for n, g in frames]
        blocks.append(Block(title=f"Automatic vs expert masks, {title}",
                            figure=Figure(fig, charts.FMT, f"Dice and HD95 {title}"),
                            table=Table(["group", "cases", "Dice median [IQR]", "HD95 mm median [IQR]"], rows, css="counts")))
    return blocks


def _by_quality(both: pd.DataFrame, quality: dict[str, str]) -> list[tuple[str, pd.DataFrame]]:
    from etl.review.store import SCORES

    if not quality:
        return []
    q = both["patient_id"].map(quality)
    return [(s, both[q == s]) for s in SCORES if (q == s).any()]


def _worst(src: ReportSource, qc: pd.DataFrame) -> Block:
    from etl.report import gallery

    n = int((config().get("segmentations") or {}).get("worst", 10))
    both = qc[_column(qc, "dice").notna()].copy()
    both["dice"] = _column(both, "dice")
    worst = both.sort_values(["dice", "patient_id"], kind="mergesort").head(n)
    block = Block(title=f"The {len(worst)} cases with the lowest Dice")
    if worst.empty:
        block.notes.append("No case has both masks.")
        return block
    views = src.table.set_index(src.table["patient_id"].astype(str))["view"].to_dict() if "view" in src.table.columns else {}
    rows = []
    why = gallery.renderer_missing() if src.layout is not None else "no images in this input"
    for r in worst.itertuples(index=False):
        pid = str(r.patient_id)
        hd = getattr(r, "hd95_mm", None)
        rows.append([cell(pid, css="label"), cell(str(r.dataset)), cell(f"{r.dice:.3f}", patient=pid, dice=f"{r.dice:.6f}"),
                     cell("" if hd is None or pd.isna(hd) else f"{float(hd):.1f}"),
                     cell(_cm3(getattr(r, "mask_volume_mm3", None))), cell(_cm3(getattr(r, "expert_volume_mm3", None)))])
        if why is None:
            pics, drawn = gallery.case_pictures(src, pid, views.get(pid), ("post",), WORST_PX)
            if pics:
                block.tiles.append(gallery.tile(pics, f"{pid} ({r.dataset}), Dice {r.dice:.2f}", labels=False))
            else:
                block.notes.append(f"{pid}: no picture ({drawn})")
    if why is not None:
        block.notes.append(f"No thumbnails: {why}.")
    else:
        block.notes.append("Thumbnails: first post-contrast phase in the acquisition plane through the expert "
                           "lesion's centre; contours: expert mask red, automatic mask yellow.")
    block.table = Table(["case", "dataset", "Dice", "HD95 (mm)", "automatic cm³", "expert cm³"], rows, css="counts")
    return block


def _cm3(v: Any) -> str:
    return "" if v is None or pd.isna(v) else f"{float(v) / 1000.0:.2f}"


def _corrections(df: pd.DataFrame) -> Block:
    """What the experts changed, per quality class of the automatic mask (the paper's Figure 7 in numbers)."""
    from etl.review.store import SCORES

    df = df.copy()
    df["quality"] = df["quality"].astype("string").fillna("not rated")
    order = [s for s in SCORES if (df["quality"] == s).any()] + (["not rated"] if (df["quality"] == "not rated").any() else [])
    rows = []
    for q in ["all", *order]:
        g = df if q == "all" else df[df["quality"] == q]
        num = {c: pd.to_numeric(g[c], errors="coerce").dropna().to_numpy(float) for c in ("added_cm3", "removed_cm3", "dice", "hd95_mm")}
        rows.append([cell(q, css="label"), cell(len(g), quality=q, count=len(g)), cell(_stat(num["added_cm3"])),
                     cell(_stat(num["removed_cm3"])), cell(_stat(num["dice"])), cell(_stat(num["hd95_mm"]))])
    return Block(title=f"Expert corrections ({len(df)} corrected cases)",
                 table=Table(["quality of the automatic mask", "cases", "added cm³ median [IQR]", "removed cm³ median [IQR]",
                              "Dice auto vs corrected", "HD95 mm auto vs corrected"], rows, css="counts"))
