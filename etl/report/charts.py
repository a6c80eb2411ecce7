"""The report's charts: small multiples per dataset, drawn with the package's one figure style.

Why small multiples: the four collections differ by an order of magnitude in size (NACT 64, ISPY2 980), so
one panel per dataset with its own x scale shows each collection's mix, where stacked or grouped bars would
hide the small ones. Every panel is titled with its dataset and case count, every axis says what it counts
and in which unit, bars carry their counts, and missing values are a grey hatched bar of their own (never
dropped), so a chart reads in seconds and survives greyscale print. Output is SVG bytes (plotstyle:
deterministic, text as paths, so the figure looks the same on every machine).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from etl.plotstyle import CYCLE, DATASET_COLOURS, MISSING_COLOUR, OKABE_ITO, figure_bytes, new_figure, style

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

MISSING = "missing"
WIDTH_IN = 7.6
FMT = "svg"


def dataset_colour(ds: str, i: int) -> str:
    return DATASET_COLOURS.get(ds, CYCLE[i % len(CYCLE)])


def _panel_grid(n: int) -> tuple[int, int]:
    """Panels per row: up to four datasets side by side, then wrap."""
    cols = min(max(n, 1), 4)
    return math.ceil(max(n, 1) / cols), cols


def _small_multiples(title: str, n: int, row_height_in: float, extra_in: float, sharex: bool = False,
                     sharey: bool = False) -> tuple[Figure, list[Axes], int]:
    """A titled figure with one panel per dataset (up to four a row; spare grid cells hidden): the figure,
    the ``n`` panels in order and the number of columns. Call inside ``plotstyle.style()``."""
    nrows, ncols = _panel_grid(n)
    fig = new_figure(WIDTH_IN, extra_in + row_height_in * nrows)
    axes = list(fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey).flat)
    fig.suptitle(title, fontsize=10, fontweight="bold", x=0.01, ha="left")
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n], ncols


def _integer_ticks(axis: Axis) -> None:
    """Ticks at whole numbers only (counts), on the axis' default locator (a ``MaxNLocator``)."""
    from matplotlib.ticker import MaxNLocator

    locator = axis.get_major_locator()
    if isinstance(locator, MaxNLocator):
        locator.set_params(integer=True)


def category_chart(title: str, per_dataset: dict[str, dict[str, int]], order: Sequence[str],
                   xlabel: str = "cases", label_colours: dict[str, str] | None = None) -> bytes:
    """Horizontal bars per label, one panel per dataset (labels shared down the left); ``label_colours``
    colours bars by label instead (e.g. the datasets' own colours in a chart of cases per dataset)."""
    datasets = list(per_dataset)
    labels = list(order)
    with style():
        fig, axes, _ = _small_multiples(title, len(datasets), 0.35 + 0.2 * max(len(labels), 1), 0.75, sharey=True)
        y = np.arange(len(labels))
        for i, (ds, ax) in enumerate(zip(datasets, axes)):
            counts = [int(per_dataset[ds].get(lab, 0)) for lab in labels]
            n = sum(counts)
            colours = [MISSING_COLOUR if lab == MISSING else (label_colours or {}).get(lab, dataset_colour(ds, i))
                       for lab in labels]
            bars = ax.barh(y, counts, color=colours, edgecolor="#333333", linewidth=0.4, height=0.7)
            for bar, lab in zip(bars, labels):
                if lab == MISSING:
                    bar.set_hatch("////")
            top = max(counts) if counts and max(counts) > 0 else 1
            ax.set_xlim(0, top * 1.28)
            for yi, c in zip(y, counts):
                ax.text(c + top * 0.02, float(yi), f"{c}" + (f" ({100 * c / n:.0f}%)" if n and c else ""), va="center",
                        fontsize=7.5, color="#222222")
            ax.set_title(f"{ds} (n={n})", fontsize=9, color=dataset_colour(ds, i) if not label_colours else "#222222",
                         loc="left", fontweight="bold")
            ax.set_yticks(y, labels)
            if i == 0:
                ax.invert_yaxis()  # shared y: invert once, first label on top
            ax.grid(axis="y", visible=False)
            _integer_ticks(ax.xaxis)
            ax.set_xlabel(xlabel)
        return figure_bytes(fig, FMT)


def _edges(values: np.ndarray, log: bool = False) -> np.ndarray:
    """Shared bin edges: integer-aligned for few distinct integers, else about sqrt(n) bins (10 to 30)."""
    if len(values) == 0:
        return np.array([0.0, 1.0])
    lo, hi = float(values.min()), float(values.max())
    if log:
        lo, hi = math.log10(max(lo, 1e-6)), math.log10(max(hi, 1e-6))
    if hi <= lo:
        return np.array([lo - 0.5, lo + 0.5])
    distinct = np.unique(values)
    if not log and len(distinct) <= 30 and np.allclose(distinct, np.round(distinct)):
        step = max(1.0, float(np.min(np.diff(distinct))) if len(distinct) > 1 else 1.0)
        if (hi - lo) / step <= 40:  # one bar per possible value (e.g. phases, slices)
            return np.arange(lo - step / 2, hi + step, step)
    k = int(min(30, max(10, round(math.sqrt(len(values))))))
    return np.linspace(lo, hi, k + 1)


def histogram_chart(title: str, unit: str, values: dict[str, np.ndarray], missing: dict[str, int],
                    log: bool = False) -> bytes:
    """One histogram per dataset on shared bins; each panel states n, missing and the median."""
    datasets = list(values)
    everything = np.concatenate([v for v in values.values() if len(v)] or [np.zeros(0)])
    edges = _edges(everything, log)
    with style():
        fig, axes, ncols = _small_multiples(title, len(datasets), 1.75, 0.7, sharex=True)
        for i, (ds, ax) in enumerate(zip(datasets, axes)):
            v = values[ds]
            data = np.log10(np.maximum(v, 1e-6)) if log else v
            if len(v):
                counts, _ = np.histogram(data, bins=edges)  # one filled step artist: light SVG, fast
                ax.stairs(counts, edges, fill=True, color=dataset_colour(ds, i))
                ax.stairs(counts, edges, color="#333333", linewidth=0.5)
                med = float(np.median(v))
                ax.axvline(math.log10(max(med, 1e-6)) if log else med, color=OKABE_ITO["black"], linewidth=1,
                           linestyle="--")
                note = f"n={len(v)}, median {_num(med)}"
            else:
                note = "no values"
            if missing.get(ds):
                note += f"\nmissing {missing[ds]}"
            ax.text(0.98, 0.97, note, transform=ax.transAxes, ha="right", va="top", fontsize=7.5,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
            ax.set_title(ds, fontsize=9, color=dataset_colour(ds, i), loc="left", fontweight="bold")
            ax.set_xlabel(f"log10 {unit}" if log else unit)
            _integer_ticks(ax.yaxis)
            if i % ncols == 0:
                ax.set_ylabel("cases")
        return figure_bytes(fig, FMT)


def split_chart(title: str, rows: list[tuple[str, dict[str, int]]], parts: Sequence[str], expected_test: float | None) -> bytes:
    """100 % stacked bars per stratum: the share of its cases in test and in each training fold."""
    colours = [OKABE_ITO["vermillion"], OKABE_ITO["blue"], OKABE_ITO["sky_blue"], OKABE_ITO["bluish_green"],
               OKABE_ITO["orange"], OKABE_ITO["reddish_purple"], OKABE_ITO["yellow"], "#666666"]
    with style():
        fig = new_figure(WIDTH_IN, 1.1 + 0.2 * max(len(rows), 1))
        ax = fig.subplots()
        fig.suptitle(title, fontsize=10, fontweight="bold", x=0.01, ha="left")
        y = np.arange(len(rows))
        left = np.zeros(len(rows))
        totals = np.array([max(sum(c.values()), 1) for _, c in rows], dtype=float)
        for k, part in enumerate(parts):
            share = np.array([c.get(part, 0) for _, c in rows], dtype=float) / totals * 100
            ax.barh(y, share, left=left, color=colours[k % len(colours)], edgecolor="white", linewidth=0.5,
                    height=0.75, label=part, hatch="xx" if part == "test" else None)
            left += share
        for yi, (_, c) in zip(y, rows):
            ax.text(101, float(yi), f"n={sum(c.values())}", va="center", fontsize=7)
        if expected_test is not None:
            ax.axvline(expected_test * 100, color=OKABE_ITO["black"], linestyle="--", linewidth=1)
        ax.set_yticks(y, [r for r, _ in rows], fontsize=7.5)
        ax.invert_yaxis()
        ax.set_xlim(0, 112)
        ax.set_xticks([0, 20, 40, 60, 80, 100])
        ax.set_xlabel("share of the stratum's cases (%)" + (f"; dashed line: test fraction {expected_test:g}"
                                                             if expected_test is not None else ""))
        ax.grid(axis="y", visible=False)
        ax.legend(ncols=len(parts), loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=7.5, handlelength=1.2)
        return figure_bytes(fig, FMT)


def agreement_chart(title: str, groups: list[tuple[str, np.ndarray, np.ndarray]], colours: Sequence[str]) -> bytes:
    """Dice and HD95 side by side: horizontal box plots per group with every case as a dot (deterministic
    jitter), so a reader sees both the spread and the outliers."""
    rng = np.random.default_rng(0)
    with style():
        fig = new_figure(WIDTH_IN, 0.95 + 0.42 * max(len(groups), 1))
        axes = fig.subplots(1, 2, sharey=True)
        fig.suptitle(title, fontsize=10, fontweight="bold", x=0.01, ha="left")
        y = np.arange(len(groups))
        for ax, k, xlabel in ((axes[0], 1, "Dice (automatic vs expert; 1 = identical)"),
                              (axes[1], 2, "HD95 (mm; 0 = identical)")):
            data = [np.asarray(g[k], dtype=float) for g in groups]
            data = [d[np.isfinite(d)] for d in data]
            nonempty = [i for i, d in enumerate(data) if len(d)]
            if nonempty:
                ax.boxplot([data[i] for i in nonempty], positions=[y[i] for i in nonempty], orientation="horizontal",
                           widths=0.55, showfliers=False, medianprops={"color": OKABE_ITO["black"], "linewidth": 1.4},
                           boxprops={"linewidth": 0.8}, whiskerprops={"linewidth": 0.8}, capprops={"linewidth": 0.8})
            for i, d in enumerate(data):
                if len(d):
                    # dots as one embedded bitmap: 1500 cases stay a few kB instead of 1500 SVG paths
                    ax.scatter(d, y[i] + rng.uniform(-0.18, 0.18, len(d)), s=9, color=colours[i % len(colours)],
                               edgecolors="#333333", linewidths=0.3, zorder=3, rasterized=True)
            ax.set_xlabel(xlabel)
            ax.grid(axis="y", visible=False)
            if k == 1:
                ax.set_xlim(-0.02, 1.02)
            else:
                ax.set_xlim(left=0)
        axes[0].set_yticks(y, [f"{g[0]} (n={len(g[1])})" for g in groups])
        axes[0].invert_yaxis()
        return figure_bytes(fig, FMT, dpi=200)  # dpi of the embedded dots (print quality)


def volume_chart(title: str, per_dataset: dict[str, dict[str, np.ndarray]], unit: str = "volume, cm³") -> bytes:
    """Mask volumes per dataset on a log axis: automatic and expert masks as overlaid histograms."""
    from etl.plotstyle import MASK_RGB

    kinds = {"automatic": "#%02X%02X%02X" % MASK_RGB["automatic"], "expert": "#%02X%02X%02X" % MASK_RGB["expert"]}
    datasets = list(per_dataset)
    everything = np.concatenate([v[v > 0] for d in per_dataset.values() for v in d.values() if len(v)] or [np.ones(1)])
    edges = _edges(everything, log=True)
    with style():
        fig, axes, ncols = _small_multiples(title, len(datasets), 1.75, 0.9, sharex=True)
        for i, (ds, ax) in enumerate(zip(datasets, axes)):
            for kind, colour in kinds.items():
                v = per_dataset[ds].get(kind, np.zeros(0))
                v = v[v > 0]
                if len(v):
                    counts, _ = np.histogram(np.log10(v), bins=edges)
                    ax.stairs(counts, edges, fill=True, alpha=0.45, color=colour, label=f"{kind} mask")
                    ax.stairs(counts, edges, color="#333333", linewidth=0.6, linestyle="-" if kind == "expert" else "--")
            note = ", ".join(f"{k} {int((per_dataset[ds].get(k, np.zeros(0)) > 0).sum())}" for k in kinds)
            ax.text(0.98, 0.97, note, transform=ax.transAxes, ha="right", va="top", fontsize=7,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
            ax.set_title(ds, fontsize=9, color=dataset_colour(ds, i), loc="left", fontweight="bold")
            ticks = [t for t in range(int(math.floor(edges[0])), int(math.ceil(edges[-1])) + 1)]
            ax.set_xticks(ticks, [_num(10.0 ** t) for t in ticks])
            ax.set_xlabel(f"{unit} (log scale)")
            _integer_ticks(ax.yaxis)
            if i % ncols == 0:
                ax.set_ylabel("cases")
        from matplotlib.patches import Patch

        fig.legend([Patch(facecolor=c, alpha=0.45, edgecolor="#333333") for c in kinds.values()],
                   [f"{k} mask" for k in kinds], loc="upper right", ncols=2, fontsize=8)
        return figure_bytes(fig, FMT)


def _num(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.3g}"
    return f"{v:.2g}"
