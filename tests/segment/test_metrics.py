"""QC metrics against shapes whose answers are known in closed form, in millimetres, on anisotropic grids."""

from __future__ import annotations

import math

import numpy as np
import pytest

from etl.segment.metrics import agreement, component_count, dice, surface, volume_mm3


def ball(shape: tuple[int, int, int], spacing: tuple[float, float, float], centre_mm: tuple[float, float, float],
         radius_mm: float) -> np.ndarray:
    axes = [np.arange(n) * s for n, s in zip(shape, spacing)]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    return ((x - centre_mm[0]) ** 2 + (y - centre_mm[1]) ** 2 + (z - centre_mm[2]) ** 2) <= radius_mm**2


def lens_dice(r: float, d: float) -> float:
    """Dice of two equal spheres offset by d: lens volume / sphere volume."""
    return (4 * r + d) * (2 * r - d) ** 2 / (16 * r**3)


def offset_hd95(r: float, d: float) -> tuple[float, float]:
    """95th percentile and mean of the symmetric surface distance of two spheres offset by d.

    A surface point at polar angle t (cos t uniform on [-1, 1] for area-uniform points) lies
    |sqrt(r^2 + d^2 - 2 r d cos t) - r| from the other sphere; both directions give the same law.
    """
    u = np.linspace(-1, 1, 200_001)
    dist = np.abs(np.sqrt(r**2 + d**2 - 2 * r * d * u) - r)
    return float(np.percentile(dist, 95)), float(dist.mean())


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 0.7, 2.0), (0.6, 1.2, 3.0)])
@pytest.mark.parametrize("offset_axis", [0, 2])
def test_offset_spheres(spacing: tuple[float, float, float], offset_axis: int) -> None:
    r, d = 15.0, 6.0
    fov = 70.0
    shape = tuple(int(round(fov / s)) for s in spacing)
    c1 = np.array([30.0, 31.0, 29.0])
    c2 = c1.copy()
    c2[offset_axis] += d
    a = ball(shape, spacing, tuple(c1), r)
    b = ball(shape, spacing, tuple(c2), r)
    got = agreement(a, b, spacing)
    hd95, msd = offset_hd95(r, d)
    assert got.dice == pytest.approx(lens_dice(r, d), abs=0.03)
    # voxelised surfaces are off by up to about half a voxel along the offset axis
    tol = 0.6 * spacing[offset_axis] + 0.3
    assert got.hd95_mm == pytest.approx(hd95, abs=tol)
    assert got.msd_mm == pytest.approx(msd, abs=tol)
    assert 0.85 * d <= got.hd95_mm <= 1.1 * d + tol  # "HD95 ~ d"
    # measured in mm, not voxels: the same geometry gives the same numbers whatever the grid
    assert volume_mm3(a, spacing) == pytest.approx(4 / 3 * math.pi * r**3, rel=0.05)


def test_identical_and_disjoint() -> None:
    spacing = (0.8, 0.8, 2.5)
    a = ball((80, 40, 24), spacing, (24.0, 16.0, 30.0), 8.0)
    same = agreement(a, a.copy(), spacing)
    assert (same.dice, same.hd95_mm, same.msd_mm) == (1.0, 0.0, 0.0)
    far = np.roll(a, 25, axis=0)  # 25 voxels * 0.8 mm = 20 mm shift: no overlap, no wrap-around
    got = agreement(a, far, spacing)
    assert got.dice == 0.0
    assert got.hd95_mm == pytest.approx(offset_hd95(8.0, 20.0)[0], abs=0.6)
    assert got.msd_mm == pytest.approx(offset_hd95(8.0, 20.0)[1], abs=0.6)


def test_empty_masks_have_defined_values() -> None:
    spacing = (1.0, 1.0, 3.0)
    empty = np.zeros((20, 20, 10), np.uint8)
    one = empty.copy()
    one[5:9, 5:9, 3:5] = 1
    both = agreement(empty, empty, spacing)
    assert (both.dice, both.hd95_mm, both.msd_mm) == (1.0, 0.0, 0.0)
    for a, b in ((empty, one), (one, empty)):
        got = agreement(a, b, spacing)
        assert got.dice == 0.0 and math.isnan(got.hd95_mm) and math.isnan(got.msd_mm)
    assert volume_mm3(empty, spacing) == 0.0
    assert component_count(empty) == 0
    assert volume_mm3(one, spacing) == 4 * 4 * 2 * 3.0
    assert dice(empty, empty) == 1.0


def test_components_and_surface() -> None:
    m = np.zeros((12, 12, 12), bool)
    m[1:4, 1:4, 1:4] = True
    m[6:9, 6:9, 6:9] = True
    m[9, 9, 9] = True  # touches the second cube by a corner only: 26-connectivity joins it
    assert component_count(m) == 2
    cube = np.zeros((7, 7, 7), bool)
    cube[1:6, 1:6, 1:6] = True
    assert surface(cube).sum() == 5**3 - 3**3
    edge = np.ones((4, 4, 4), bool)  # a mask filling the grid: its border is its surface
    assert surface(edge).sum() == 4**3 - 2**3


def test_grid_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        agreement(np.zeros((3, 3, 3)), np.zeros((3, 3, 4)), (1.0, 1.0, 1.0))
