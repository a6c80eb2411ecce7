"""Gallery section and case thumbnails: slices through the lesion drawn by the review app's renderer.

The pictures come from ``etl.review.render`` (the one slice renderer of the package: LPS reorientation
without resampling, radiological display, physical aspect, robust window, mask contours in
``plotstyle.MASK_RGB``), cut in the plane the case was acquired in (axial or sagittal) through the centroid
of the lesion's largest component. Cases are a seeded sample: by default one per dataset and view, so the
gallery stays small for 1506 cases and the same seed shows the same cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from etl.report.model import Block, Figure, Section
from etl.report.source import ReportSource

SERIES_TITLES = {"pre": "pre-contrast (phase 0000)", "post": "first post-contrast (phase 0001)",
                 "sub": "subtraction (0001 - 0000)"}
GALLERY_PX = 300


@dataclass(frozen=True)
class Picture:
    label: str
    png: bytes
    width: int
    height: int


def renderer_missing() -> str | None:
    """Why the slice renderer cannot be used here, or None."""
    try:
        import etl.review.render  # noqa: F401
    except ImportError as exc:
        return f"the slice renderer (etl.review.render) is not available: {exc}"
    return None


def plane_of(view: Any) -> str:
    return "sagittal" if isinstance(view, str) and view.strip().lower() == "sagittal" else "axial"


def case_pictures(src: ReportSource, pid: str, view: Any, series: tuple[str, ...], max_px: int) -> tuple[list[Picture], str]:
    """The requested series of one case in its acquisition plane, with every mask it has as a contour;
    the second value says which masks were drawn (or why nothing was)."""
    from etl.errors import EtlError
    from etl.review.render import render_files

    assert src.layout is not None
    phases = src.layout.images(pid)
    if len(phases) < 2:
        return [], f"{len(phases)} phase file(s): needs pre- and post-contrast"
    masks = {k: p for k, p in (("expert", src.layout.expert_mask(pid)), ("automatic", src.layout.automatic_mask(pid)))
             if p.is_file()}
    plane = plane_of(view)
    try:
        views = render_files(phases[1], phases[0], masks=masks, series=series, planes=(plane,), max_px=max_px)
    except EtlError as exc:
        return [], exc.message
    pics = []
    for s in series:
        key = f"{s}_{plane}"
        if key in views.png:
            w, h = views.sizes[key]
            pics.append(Picture(f"{SERIES_TITLES[s]}, {plane}", views.png[key], w, h))
    drawn = ("contours: " + ", ".join(masks)) if masks else "no mask"
    return pics, drawn


def choose(df: pd.DataFrame, n: int | None, seed: int, available: set[str]) -> list[str]:
    """Seeded sample: one case per (dataset, view) by default, else ``n`` cases spread over those groups
    round-robin; only cases whose images are present."""
    rows = df[df["patient_id"].astype(str).isin(available)]
    if rows.empty:
        return []
    keys = [c for c in ("dataset", "view") if c in rows.columns]
    groups = [sorted(g["patient_id"].astype(str)) for _, g in rows.groupby(keys, sort=True, dropna=False)] if keys \
        else [sorted(rows["patient_id"].astype(str))]
    rng = np.random.default_rng(seed)
    shuffled = [[g[i] for i in rng.permutation(len(g))] for g in groups]
    target = len(groups) if n is None else max(0, int(n))
    out: list[str] = []
    depth = 0
    while len(out) < target and any(depth < len(g) for g in shuffled):
        for g in shuffled:
            if depth < len(g) and len(out) < target:
                out.append(g[depth])
        depth += 1
    return out


def tile(pics: list[Picture], caption: str, labels: bool = True) -> dict[str, Any]:
    """A case's pictures side by side with a caption (``labels``: name each picture under it)."""
    return {"images": [{"figure": Figure(p.png, "png", p.label, css=""), "width": p.width, "height": p.height,
                        "label": p.label if labels else ""} for p in pics], "caption": caption}


def section(src: ReportSource, n: int | None, seed: int) -> tuple[Section | None, str | None]:
    """The Gallery, or None and why not."""
    if src.layout is None:
        return None, "gallery: no images in a table"
    why = renderer_missing()
    if why:
        return None, f"gallery: {why}"
    df = src.table
    available = {pid for pid in df["patient_id"].astype(str) if src.layout.image(pid, 1).is_file()}
    chosen = choose(df, n, seed, available)
    if not chosen:
        return None, "gallery: no case has a pre- and a post-contrast phase"
    by_id = df.set_index(df["patient_id"].astype(str))
    block = Block()
    for pid in chosen:
        row = by_id.loc[pid]
        pics, drawn = case_pictures(src, pid, row.get("view"), ("pre", "post", "sub"), GALLERY_PX)
        facts = ", ".join(str(row[c]) for c in ("dataset", "view", "manufacturer") if c in row.index and pd.notna(row[c]))
        if pics:
            block.tiles.append(tile(pics, f"{pid} ({facts}); {drawn}"))
        else:
            block.notes.append(f"{pid}: not shown ({drawn})")
    sec = Section("gallery", "Gallery",
                  f"{len(chosen)} case(s) drawn with seed {seed} ({'one per dataset and view' if n is None else f'{n} requested'}): "
                  "pre-contrast, first post-contrast and subtraction slices in the acquisition plane through the "
                  "lesion's centre, radiological display (patient's left on the right), physical aspect, "
                  "grey range 1st-99.5th percentile.")
    sec.notes.append("Contours: expert mask red, automatic mask yellow.")
    sec.blocks.append(block)
    return sec, None
