"""Mask quality in millimetres: volume, lesion count, and overlap/surface distances against an expert mask.

Distances use the voxel spacing (the public MAMA-MIA challenge scorer measured in voxels; we do not).

Conventions
- Surface of a mask: its voxels with at least one 6-neighbour outside the mask (the image border counts
  as outside). Surface distance of a voxel = Euclidean distance in mm (``distance_transform_edt`` with
  ``sampling=spacing``) from its centre to the nearest surface voxel centre of the other mask.
- HD95 = 95th percentile and MSD = mean of the pooled distances A->B and B->A (symmetric, as medpy/MONAI).
- Lesion components are counted with 26-connectivity (face, edge or corner contact joins voxels).
- Empty masks: both empty -> Dice 1.0, HD95 0.0, MSD 0.0 (perfect agreement on "no lesion");
  exactly one empty -> Dice 0.0, HD95 and MSD NaN (no surface to measure to; stored as null).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from etl.types import Spacing

_FACE = ndimage.generate_binary_structure(3, 1)
_FULL = ndimage.generate_binary_structure(3, 3)


@dataclass(frozen=True)
class Agreement:
    dice: float
    hd95_mm: float
    msd_mm: float


def volume_mm3(mask: np.ndarray, spacing: Spacing) -> float:
    return float(np.count_nonzero(mask)) * float(np.prod(spacing))


def component_count(mask: np.ndarray) -> int:
    """Number of 26-connected lesion components."""
    return int(ndimage.label(np.asarray(mask, bool), structure=_FULL)[1])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * float(np.logical_and(a, b).sum()) / total


def surface(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask, bool)
    return mask & ~ndimage.binary_erosion(mask, structure=_FACE, border_value=0)


def surface_distances(a: np.ndarray, b: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Distances in mm from each surface voxel of ``a`` to the surface of ``b`` (both must be non-empty)."""
    sa, sb = surface(a), surface(b)
    dist_to_b = ndimage.distance_transform_edt(~sb, sampling=spacing)
    return dist_to_b[sa]


def _crop(a: np.ndarray, b: np.ndarray, pad: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to their joint bounding box plus a margin: same distances, far less work."""
    idx = np.argwhere(a | b)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = idx.max(axis=0) + pad + 1
    sl = tuple(slice(int(l), int(h)) for l, h in zip(lo, hi))
    return a[sl], b[sl]


def agreement(pred: np.ndarray, ref: np.ndarray, spacing: Spacing) -> Agreement:
    """Dice, HD95 (mm) and mean surface distance (mm) between two masks on the same grid."""
    pred = np.asarray(pred) > 0
    ref = np.asarray(ref) > 0
    if pred.shape != ref.shape:
        raise ValueError(f"masks on different grids: {pred.shape} vs {ref.shape}")
    d = dice(pred, ref)
    n_pred, n_ref = int(pred.sum()), int(ref.sum())
    if n_pred == 0 and n_ref == 0:
        return Agreement(1.0, 0.0, 0.0)
    if n_pred == 0 or n_ref == 0:
        return Agreement(0.0, math.nan, math.nan)
    # Padding keeps the border rule (outside the grid = outside the mask) equivalent after cropping:
    # the crop margin only adds background, and surfaces touching the grid edge stay at the crop edge.
    p, r = _crop(pred, ref)
    dists = np.concatenate([surface_distances(p, r, spacing), surface_distances(r, p, spacing)])
    return Agreement(d, float(np.percentile(dists, 95)), float(dists.mean()))
