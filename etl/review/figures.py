"""Correction figures (the paper's Figures 6 and 7): what the experts changed, per case and per quality class.

- Per case (``cases/{patient_id}_correction.png``): the first post-contrast slice through the lesion (the axial
  slice where automatic and expert mask together cover the most voxels), whole field of view and a zoom on
  the lesion; automatic contour yellow, expert contour red, voxels the expert added filled green, removed
  filled pink (``etl.plotstyle.MASK_RGB``). Radiological display (patient left on the screen's right), axes
  in mm, slices as ``etl.review.render`` cuts them for the rating app.
- For the set: Dice and HD95 (automatic vs expert) per quality class as box plots with every case as a dot
  (``agreement_by_quality.png``), and the volume added and removed per class (``volume_changes.png``).

Matplotlib through ``etl.plotstyle`` (one style, deterministic PNG bytes). Everything is computed from the
corrections table and the mask files; a case whose files are missing is skipped with a log line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from etl.errors import EtlError, InputUnreadable
from etl.plotstyle import MASK_RGB, figure_bytes, new_figure, style
from etl.types import StrPath

log = logging.getLogger("etl.review.figures")

CLASSES = ("good", "acceptable", "poor", "missed", "unrated")
ZOOM_MARGIN_MM = 15.0


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02X}{:02X}{:02X}".format(*rgb)


def load_corrections(source: Path) -> tuple[pd.DataFrame, Any]:
    """Current correction rows and the layout of a staged directory or release."""
    from etl.review.cases import load_cases
    from etl.review.corrections import corrections_path, current_corrections

    layout = load_cases(source, require_automatic=False).layout
    path = corrections_path(layout)
    if not path.is_file():
        raise InputUnreadable("no corrections table (run `mamamia review import` first)", str(path))
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InputUnreadable(f"corrections table unreadable: {str(exc)[:120]}", str(path)) from exc
    if "current" in df.columns:
        df = current_corrections(df)
    return df.reset_index(drop=True), layout


# ------------------------------------------------------------------------------------------------ per case


def _lesion_slice(auto: np.ndarray, expert: np.ndarray) -> int:
    """The axial index (LPS axis 2) through the lesion that shows the most of the correction: most voxels
    added or removed, then most mask voxels; ties: the lowest index."""
    changed = (auto ^ expert).sum(axis=(0, 1))
    union = (auto | expert).sum(axis=(0, 1))
    order = np.lexsort((-np.arange(len(union)), union, changed))  # last key first: changed, then union
    return int(order[-1])


def correction_overlay(post: Path, automatic: Path | None, expert: Path, title: str) -> bytes:
    """PNG bytes of one case's correction figure (see the module docstring)."""
    from matplotlib.patches import Patch, Rectangle

    from etl.review.render import load_mask, load_volume, plane_slice, plane_spacing, robust_window

    vol = load_volume(post)
    exp = load_mask(expert, vol)
    auto = load_mask(automatic, vol) if automatic is not None else np.zeros_like(exp)
    union = exp | auto
    k = _lesion_slice(auto, exp) if union.any() else vol.data.shape[2] // 2
    point = (0, 0, k)
    img = plane_slice(vol.data, "axial", point)
    a2, e2 = plane_slice(auto, "axial", point), plane_slice(exp, "axial", point)
    row_mm, col_mm = plane_spacing(vol.spacing, "axial")
    h, w = img.shape
    lo, hi = robust_window(vol.data)
    x = (np.arange(w) + 0.5) * col_mm
    y = (np.arange(h) + 0.5) * row_mm
    extent = (0.0, w * col_mm, h * row_mm, 0.0)

    # zoom: the slice's masks' box plus a margin (the whole slice when the slice shows no mask)
    rows, cols = np.nonzero(a2 | e2)
    if len(rows):
        y0, y1 = max(rows.min() * row_mm - ZOOM_MARGIN_MM, 0), min((rows.max() + 1) * row_mm + ZOOM_MARGIN_MM, h * row_mm)
        x0, x1 = max(cols.min() * col_mm - ZOOM_MARGIN_MM, 0), min((cols.max() + 1) * col_mm + ZOOM_MARGIN_MM, w * col_mm)
    else:
        x0, x1, y0, y1 = 0.0, w * col_mm, 0.0, h * row_mm

    added = e2 & ~a2
    removed = a2 & ~e2
    paint = np.zeros((h, w, 4))
    for mask, key in ((added, "added"), (removed, "removed")):
        paint[mask, :3] = np.asarray(MASK_RGB[key]) / 255.0
        paint[mask, 3] = 0.7

    with style():
        fig = new_figure(8.0, 4.4)
        axes = fig.subplots(1, 2)
        for ax, zoom in zip(axes, (False, True)):
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
            if zoom:
                ax.imshow(paint, extent=extent, interpolation="nearest")
                ax.set_xlim(x0, x1)
                ax.set_ylim(y1, y0)
            # the automatic contour wider, under the expert's: where they coincide both stay visible
            for mask, key, width in ((a2, "automatic", 2.4), (e2, "expert", 1.0)):
                if mask.any():
                    ax.contour(x, y, mask.astype(float), levels=[0.5], colors=[_hex(MASK_RGB[key])],
                               linewidths=width if zoom else width * 0.6)
            ax.grid(False)
            ax.set_xlabel("mm (patient right to left)")
            ax.set_ylabel("mm (anterior to posterior)")
            ax.set_title("zoom on the lesion" if zoom else f"axial slice {k + 1} of {vol.data.shape[2]}, whole field of view")
        axes[0].add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", linewidth=0.8,
                                    linestyle="--"))
        handles = [Patch(facecolor="none", edgecolor=_hex(MASK_RGB["automatic"]), label="automatic"),
                   Patch(facecolor="none", edgecolor=_hex(MASK_RGB["expert"]), label="expert"),
                   Patch(facecolor=_hex(MASK_RGB["added"]), label=f"added ({int(added.sum())} voxels here)"),
                   Patch(facecolor=_hex(MASK_RGB["removed"]), label=f"removed ({int(removed.sum())} voxels here)")]
        fig.legend(handles=handles, loc="outside lower center", ncols=4)
        fig.suptitle(title)
        return figure_bytes(fig)


# ------------------------------------------------------------------------------------------------ the set


def _classes(df: pd.DataFrame) -> tuple[list[str], pd.Series]:
    quality = df["quality"].astype("string").fillna("unrated").str.lower()
    present = [c for c in CLASSES if c in set(quality)] or ["unrated"]
    extra = sorted(set(quality) - set(CLASSES))
    return present + extra, quality


def _boxes(ax: Any, groups: list[np.ndarray], positions: list[float], colour: str, width: float = 0.6) -> None:
    rng = np.random.default_rng(0)  # deterministic jitter
    data = [g for g in groups if len(g)]
    pos = [p for g, p in zip(groups, positions) if len(g)]
    if data:
        ax.boxplot(data, positions=pos, widths=width, showfliers=False, patch_artist=True,
                   boxprops={"facecolor": colour, "alpha": 0.35, "edgecolor": colour},
                   medianprops={"color": "#000000"}, whiskerprops={"color": colour}, capprops={"color": colour})
    for g, p in zip(groups, positions):
        if len(g):
            ax.scatter(p + rng.uniform(-width / 4, width / 4, len(g)), g, s=18, color=colour, zorder=3,
                       edgecolor="white", linewidth=0.3)


def agreement_figure(df: pd.DataFrame) -> bytes:
    """Dice and HD95 (automatic vs expert) per quality class."""
    from etl.plotstyle import CYCLE

    classes, quality = _classes(df)
    with style():
        fig = new_figure(8.0, 3.6)
        axes = fig.subplots(1, 2)
        for ax, col, label in ((axes[0], "dice", "Dice, automatic vs expert"), (axes[1], "hd95_mm", "HD95 (mm)")):
            groups = [pd.to_numeric(df.loc[quality == c, col], errors="coerce").dropna().to_numpy(float) for c in classes]
            _boxes(ax, groups, list(range(len(classes))), CYCLE[0])
            ax.set_xticks(range(len(classes)), [f"{c}\nn={len(g)}" for c, g in zip(classes, groups)])
            ax.set_xlim(-0.6, len(classes) - 0.4)
            ax.set_xlabel("visual rating of the automatic mask")
            ax.set_ylabel(label)
            if col == "dice":
                ax.set_ylim(-0.02, 1.02)
            else:
                ax.set_ylim(bottom=0)
        fig.suptitle(f"Automatic vs expert-corrected masks, {len(df)} case(s)")
        return figure_bytes(fig)


def volume_figure(df: pd.DataFrame) -> bytes:
    """Volume the experts added and removed (cm3) per quality class."""
    classes, quality = _classes(df)
    with style():
        fig = new_figure(6.0, 3.6)
        ax = fig.subplots(1, 1)
        for offset, col, key in ((-0.2, "added_cm3", "added"), (0.2, "removed_cm3", "removed")):
            groups = [pd.to_numeric(df.loc[quality == c, col], errors="coerce").dropna().to_numpy(float) for c in classes]
            _boxes(ax, groups, [i + offset for i in range(len(classes))], _hex(MASK_RGB[key]), width=0.35)
            ax.plot([], [], "s", color=_hex(MASK_RGB[key]), label=f"{key} by the expert")
        counts = [int((quality == c).sum()) for c in classes]
        ax.set_xticks(range(len(classes)), [f"{c}\nn={n}" for c, n in zip(classes, counts)])
        ax.set_xlim(-0.6, len(classes) - 0.4)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("visual rating of the automatic mask")
        ax.set_ylabel("volume per case (cm³)")
        ax.legend(loc="upper left")
        ax.set_title("Volume added and removed by the expert corrections")
        return figure_bytes(fig)


# ------------------------------------------------------------------------------------------------ files


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else format(float(v), spec)


def write_figures(source: StrPath, out: StrPath, per_case: bool = True) -> list[Path]:
    """Every figure for the corrections of ``source`` into ``out``; returns the files written."""
    from etl.atomic import write_bytes
    from etl.progress import track

    source, out = Path(source), Path(out)
    df, layout = load_corrections(source)
    if df.empty:
        raise InputUnreadable("the corrections table has no current row", str(source))
    written = [write_bytes(out / "agreement_by_quality.png", agreement_figure(df)),
               write_bytes(out / "volume_changes.png", volume_figure(df))]
    if not per_case:
        return written
    for row in track(df.to_dict("records"), "figures: cases", total=len(df)):
        pid = str(row["patient_id"])
        post, expert, auto = layout.image(pid, 1), layout.expert_mask(pid), layout.automatic_mask(pid)
        if not post.exists() or not expert.exists():
            log.warning("%s: no correction figure (missing %s)", pid, post if not post.exists() else expert)
            continue
        quality = row.get("quality")
        title = (f"{pid}: Dice {_fmt(row.get('dice'), '.2f')}, HD95 {_fmt(row.get('hd95_mm'), '.1f')} mm, "
                 f"added {_fmt(row.get('added_cm3'), '.2f')} cm³, removed {_fmt(row.get('removed_cm3'), '.2f')} cm³"
                 + (f" (rated {quality})" if isinstance(quality, str) and quality else ""))
        try:
            png = correction_overlay(post, auto if auto.exists() else None, expert, title)
        except EtlError as exc:
            log.warning("%s: no correction figure: %s", pid, exc.message)
            continue
        written.append(write_bytes(out / "cases" / f"{pid}_correction.png", png))
    return written
