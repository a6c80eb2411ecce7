"""One figure style for every picture the package makes (review views, correction figures, the report).

Why one module: a curator reads the review app, the correction figures and the data card side by side, so
the same colour must mean the same thing everywhere, every figure must be legible in greyscale print and to
colour-blind readers (Okabe-Ito palette), and the same input must give the same bytes (figures are listed in
SHA256SUMS). Figures are made with the object API on the Agg canvas (no pyplot state, safe in worker threads
and processes, no display needed).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType  # the rc setting names matplotlib knows: a typo is a type error

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision deficiency.
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
# the cycle for categories (datasets, classes): black is kept for text and axes
CYCLE: list[str] = [OKABE_ITO[k] for k in ("blue", "orange", "bluish_green", "vermillion", "sky_blue",
                                          "reddish_purple", "yellow")]
# fixed meanings, the same on every page
DATASET_COLOURS: dict[str, str] = {"DUKE": OKABE_ITO["blue"], "ISPY1": OKABE_ITO["orange"],
                                   "ISPY2": OKABE_ITO["bluish_green"], "NACT": OKABE_ITO["reddish_purple"]}
MISSING_COLOUR = "#BBBBBB"
# mask contours: the paper's red for the mask under review; correction figures add the expert's and the diff
MASK_RGB: dict[str, tuple[int, int, int]] = {
    "automatic": (255, 215, 0),   # yellow (the model's mask when shown next to the expert's)
    "expert": (230, 40, 40),      # red
    "reviewed": (230, 40, 40),    # red: the one mask a rater judges
    "added": (0, 158, 115),       # bluish green: voxels the expert added
    "removed": (204, 121, 167),   # reddish purple / pink: voxels the expert removed
}

RC: dict[RcKeyType, Any] = {
    "font.family": "DejaVu Sans",       # shipped with matplotlib: same glyphs on every machine
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.labelsize": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#DDDDDD",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "legend.frameon": False,
    "figure.dpi": 100.0,
    "savefig.dpi": 100.0,
    "svg.hashsalt": "mamamia-etl",      # deterministic SVG ids
    "svg.fonttype": "path",
    "path.simplify": True,
    "image.interpolation": "nearest",
}


@contextmanager
def style() -> Iterator[None]:
    """matplotlib's rc settings of this module for the duration of the block."""
    import matplotlib

    with matplotlib.rc_context(RC):
        from cycler import cycler

        matplotlib.rcParams["axes.prop_cycle"] = cycler(color=CYCLE)
        yield


def new_figure(width_in: float, height_in: float) -> Figure:
    """A matplotlib Figure on an Agg canvas (no pyplot), to be drawn on inside ``style()``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_bytes(fig: Figure, fmt: str = "png", dpi: float | None = None) -> bytes:
    """The figure encoded without wall-clock or version metadata, so equal input gives equal bytes."""
    metadata = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
                "pdf": {"CreationDate": None, "Producer": None, "Creator": None}}.get(fmt, {})
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi or RC["savefig.dpi"], metadata=metadata)
    return buf.getvalue()
