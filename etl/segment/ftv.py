"""Functional tumour volume (FTV): the I-SPY1 kinetic-threshold mask, a fallback that needs no weights.

I-SPY1 (ACRIN 6657) measured tumour volume as the voxels, inside a radiologist's box around the lesion,
whose percent enhancement from pre-contrast to the early post-contrast phase reaches a threshold
(70 %), after dropping background voxels by a pre-contrast intensity cut; the signal enhancement ratio
SER = (S_early - S_pre) / (S_late - S_pre) describes wash-out and may bound the selection. All thresholds
come from the release definition (``segmentation.ftv``). Without a box, the largest connected region is
kept (configurable), which is what a reader would pick as the index lesion.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from etl.errors import SegmentError
from etl.segment.config import FtvSettings
from etl.segment.io import phase_index

log = logging.getLogger("etl.segment")

Box = tuple[slice, slice, slice]
_FULL = ndimage.generate_binary_structure(3, 3)


def _phase(n: int, k: int, what: str) -> int:
    return phase_index(n, k, f"FTV {what}")


def percent_enhancement(pre: np.ndarray, post: np.ndarray) -> np.ndarray:
    """100 * (post - pre) / pre; 0 where pre <= 0 (no baseline to compare with)."""
    pre = pre.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        pe = np.where(pre > 0, 100.0 * (post - pre) / pre, 0.0)
    return pe.astype(np.float32)


def signal_enhancement_ratio(pre: np.ndarray, early: np.ndarray, late: np.ndarray) -> np.ndarray:
    """(early - pre) / (late - pre); +inf where the late signal is back at or below baseline (full wash-out)."""
    num = early.astype(np.float32) - pre
    den = late.astype(np.float32) - pre
    with np.errstate(divide="ignore", invalid="ignore"):
        ser = np.where(den > 0, num / den, np.inf)
    return ser.astype(np.float32)


def ftv_mask(phases: np.ndarray, spacing: Sequence[float], settings: FtvSettings, box: Box | None = None) -> np.ndarray:
    """Binary FTV mask (uint8, same grid as the phases) from a case's phases (n, x, y, z)."""
    n = phases.shape[0]
    if n < 2:
        raise SegmentError(f"FTV needs a pre- and a post-contrast phase, the case has {n}")
    pre = phases[0].astype(np.float32)
    early = phases[_phase(n, settings.early_phase, "early")].astype(np.float32)
    bg_level = float(np.percentile(pre, settings.background_percentile)) * settings.background_fraction
    sel = (pre > bg_level) & (percent_enhancement(pre, early) >= settings.pe_min_percent)
    if settings.ser_min is not None or settings.ser_max is not None:
        late_idx = _phase(n, settings.late_phase, "late")
        if late_idx == _phase(n, settings.early_phase, "early"):
            log.warning("FTV: late phase is the early phase (%d phases): SER bounds not applied", n)
        else:
            ser = signal_enhancement_ratio(pre, early, phases[late_idx])
            if settings.ser_min is not None:
                sel &= ser >= settings.ser_min
            if settings.ser_max is not None:
                sel &= ser <= settings.ser_max
    if box is not None:
        inside = np.zeros_like(sel)
        inside[box] = True
        sel &= inside
    return _components(sel, spacing, settings).astype(np.uint8)


def _components(sel: np.ndarray, spacing: Sequence[float], settings: FtvSettings) -> np.ndarray:
    labels, count = ndimage.label(sel, structure=_FULL)
    if count == 0:
        return sel
    sizes = np.bincount(labels.ravel())[1:] * float(np.prod(spacing))
    keep = sizes >= settings.min_component_mm3
    if settings.keep == "largest" and keep.any():
        best = int(np.argmax(np.where(keep, sizes, -1)))
        keep = np.zeros_like(keep)
        keep[best] = True
    return np.isin(labels, np.flatnonzero(keep) + 1)


def read_box(info_file: Path, key: str, shape: Sequence[int], spacing: Sequence[float], margin_mm: float = 0.0) -> Box | None:
    """Lesion box from a case's patient_info JSON, if it has one.

    Convention: ``{key: [[i0, i1], [j0, j1], [k0, k1]]}``, voxel indices along the image array axes, end
    exclusive. A dotted key (``primary_lesion.box``) walks nested objects. Missing file or key -> None.
    """
    if not info_file.is_file():
        return None
    try:
        node = json.loads(info_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SegmentError(f"cannot read patient info: {exc}", str(info_file)) from exc
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if node is None:
        return None
    try:
        bounds = [(int(lo), int(hi)) for lo, hi in node]
    except (TypeError, ValueError) as exc:
        raise SegmentError(f"lesion box must be [[i0,i1],[j0,j1],[k0,k1]], got {node!r}", f"{info_file}:{key}") from exc
    if len(bounds) != 3 or any(hi <= lo for lo, hi in bounds):
        raise SegmentError(f"lesion box must have three non-empty [start, end) ranges, got {node!r}", f"{info_file}:{key}")
    out = []
    for (lo, hi), n, s in zip(bounds, shape, spacing):
        m = int(np.ceil(margin_mm / s)) if margin_mm > 0 else 0
        out.append(slice(max(lo - m, 0), min(hi + m, int(n))))
    return out[0], out[1], out[2]
