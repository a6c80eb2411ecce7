"""Geometry checks of one phase: one orientation, matrix and pixel spacing; a regular stack along the normal.

A phase that fails is refused with a DicomError naming the series and a file (a missing slice, a duplicate
position, uneven spacing, shear): the converter never resamples around a broken stack.
"""

from __future__ import annotations

import numpy as np

from etl.errors import DicomError
from etl.transform.dicom.model import Slice, as_float, where

ORIENTATION_TOL = 1e-4  # cosine difference accepted as "same orientation"
SPACING_REL_TOL = 0.01  # slice gaps may differ from the median by 1 % (rounding in positions)


def turned(slices: list[Slice]) -> np.ndarray:
    """Per slice: is its orientation off the first slice's by more than ``ORIENTATION_TOL`` (one array op
    over the series or phase, which has 60-200 slices)?"""
    return np.abs(np.array([s.iop for s in slices]) - slices[0].iop).max(axis=1) > ORIENTATION_TOL


def phase_geometry(uid: str, slices: list[Slice]) -> tuple[list[Slice], np.ndarray]:
    """Sort a phase's slices along the normal, check the stack, return (sorted slices, LPS affine)."""
    first = slices[0]
    # The three per-slice checks over all slices at once (a phase has 60-200 of them); the first slice that
    # fails any check is reported, with the first check it fails, as a slice-by-slice loop would.
    bad_iop = turned(slices)
    bad_size = np.array([(s.rows, s.cols) != (first.rows, first.cols) for s in slices])
    spacing = np.array([s.pixel_spacing for s in slices], dtype=float)
    ref = np.asarray(first.pixel_spacing, dtype=float)
    bad_spacing = ~(np.abs(spacing - ref) <= 1e-6 + 1e-4 * np.abs(ref)).all(axis=1)  # np.allclose, per slice
    failing = np.flatnonzero(bad_iop | bad_size | bad_spacing)
    if failing.size:
        i = int(failing[0])
        s = slices[i]
        if bad_iop[i]:
            raise DicomError("mixed slice orientations in one phase", where(s))
        if bad_size[i]:
            raise DicomError(f"image size {s.rows}x{s.cols} differs from {first.rows}x{first.cols}", where(s))
        raise DicomError(f"pixel spacing {s.pixel_spacing} differs from {first.pixel_spacing}", where(s))
    row, col = first.iop[:3], first.iop[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise DicomError("ImageOrientationPatient is not two orthonormal cosines", where(first))
    normal = np.cross(row, col)
    ordered = sorted(slices, key=lambda s: float(s.ipp @ normal))
    proj = np.array([float(s.ipp @ normal) for s in ordered])
    n = len(ordered)
    if n > 1:
        gaps = np.diff(proj)
        tiny = np.flatnonzero(gaps < 1e-3)
        if tiny.size:
            i = int(tiny[0])
            raise DicomError(f"duplicate slice position {proj[i]:.4f} mm (also in {ordered[i].path.name})",
                             where(ordered[i + 1]))
        g = float(np.median(gaps))
        bad = np.flatnonzero(np.abs(gaps - g) > max(SPACING_REL_TOL * g, 1e-3))
        if bad.size:
            i = int(bad[0])
            ratio = gaps[i] / g
            if abs(ratio - round(ratio)) < 0.1 and round(ratio) >= 2:
                what = (f"missing slice: gap of {gaps[i]:.4f} mm between positions {proj[i]:.4f} and "
                        f"{proj[i + 1]:.4f} where slices are {g:.4f} mm apart ({int(round(ratio)) - 1} missing)")
            else:
                what = f"uneven slice spacing: gap of {gaps[i]:.4f} mm where slices are {g:.4f} mm apart"
            raise DicomError(what, where(ordered[i + 1]))
        step = (ordered[-1].ipp - ordered[0].ipp) / (n - 1)
        shear = np.linalg.norm(step - normal * (proj[-1] - proj[0]) / (n - 1))
        if shear > 1e-3 * max(1.0, g):
            raise DicomError(f"slices are not stacked along the slice normal (shear {shear:.4f} mm per slice; "
                             "gantry tilt or inconsistent positions)", where(ordered[-1]))
    else:
        thick = as_float(first.ds.get("SpacingBetweenSlices")) or as_float(first.ds.get("SliceThickness")) or 1.0
        step = normal * thick
    dr, dc = first.pixel_spacing
    affine = np.eye(4)
    affine[:3, 0] = row * dc
    affine[:3, 1] = col * dr
    affine[:3, 2] = step
    affine[:3, 3] = ordered[0].ipp
    return ordered, affine
