"""Orthogonal views: orientation (radiological), physical aspect, focus point, window, contours, bytes."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from etl.errors import ValidationFailed
from etl.plotstyle import MASK_RGB
from etl.review import render
from etl.review.render import Layer, focus_point, load_mask, load_volume, render_case, render_files


def _write(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    nib.save(img, str(path))
    return path


def _rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _marker_volume() -> tuple[np.ndarray, np.ndarray]:
    """LPS array 40 x 30 x 10 (1 x 1 x 3 mm) with a bright block near the patient's left, anterior, superior."""
    data = np.full((40, 30, 10), 100.0, np.float32)
    data[32:36, 3:6, 7:9] = 1000.0  # left (high axis-0), anterior (low axis-1), superior (high axis-2)
    affine = np.diag([-1.0, -1.0, 3.0, 1.0])  # LPS array axes in RAS world: x flipped, y flipped
    return data, affine


def test_radiological_orientation_and_same_picture_for_any_file_orientation(tmp_path: Path) -> None:
    data, aff = _marker_volume()
    mask = (data > 500).astype(np.uint8)
    lps = _write(tmp_path / "lps.nii.gz", data, aff)
    lps_mask = _write(tmp_path / "lps_mask.nii.gz", mask, aff)
    # the same object stored as RAS (axes 0 and 1 reversed, affine adjusted): same world, other array order
    ras_aff = aff.copy()
    ras_aff[:3, 0] *= -1
    ras_aff[:3, 1] *= -1
    ras_aff[:3, 3] = aff[:3, :3] @ np.array([39, 29, 0])
    ras = _write(tmp_path / "ras.nii.gz", data[::-1, ::-1].copy(), ras_aff)
    ras_mask = _write(tmp_path / "ras_mask.nii.gz", mask[::-1, ::-1].copy(), ras_aff)
    a = render_files(lps, masks={"reviewed": lps_mask}, series=("post",))
    b = render_files(ras, masks={"reviewed": ras_mask}, series=("post",))
    assert a.png == b.png  # reoriented to LPS by permutation/flip: identical pictures
    # the block is on the patient's left = screen right (axial, coronal); anterior on top (axial)
    ax = _rgb(a.png["post_axial"]).astype(int)
    bright = np.argwhere(ax[:, :, 1] > 200)
    h, w = ax.shape[:2]
    assert bright[:, 1].min() > w * 0.75 and bright[:, 0].max() < h * 0.25
    co = _rgb(a.png["post_coronal"]).astype(int)
    bright = np.argwhere(co[:, :, 1] > 200)
    assert bright[:, 1].min() > co.shape[1] * 0.75 and bright[:, 0].max() < co.shape[0] * 0.4  # superior on top
    sa = _rgb(a.png["post_sagittal"]).astype(int)
    bright = np.argwhere(sa[:, :, 1] > 200)
    assert bright[:, 1].max() < sa.shape[1] * 0.25  # anterior on the left


def test_physical_aspect_from_spacing(tmp_path: Path) -> None:
    data, aff = _marker_volume()  # 40 x 30 x 10 voxels of 1 x 1 x 3 mm: 40 x 30 x 30 mm
    views = render_files(_write(tmp_path / "v.nii.gz", data, aff), series=("post",), max_px=200)
    assert views.mm_per_px == pytest.approx(0.2)
    assert views.sizes["post_axial"] == (200, 150)  # width L 40 mm, height P 30 mm
    assert views.sizes["post_coronal"] == (200, 150)  # width L 40 mm, height S 30 mm (not 10 px squashed)
    assert views.sizes["post_sagittal"] == (150, 150)  # width P 30 mm, height S 30 mm
    # a tiny grid is not blown up beyond MAX_UPSCALE pixels per voxel
    assert render_files(tmp_path / "v.nii.gz", series=("post",), max_px=4000).mm_per_px == pytest.approx(1 / 8)


def test_focus_point_largest_component_then_box_then_centre() -> None:
    m = np.zeros((20, 20, 20), bool)
    m[2:4, 2:4, 2:4] = True  # 8 voxels
    m[10:15, 11:14, 5:10] = True  # 75 voxels: the largest
    assert focus_point(m.shape, m) == ((12, 12, 7), "mask")
    assert focus_point(m.shape, np.zeros_like(m), box_centre=(3, 4, 5)) == ((3, 4, 5), "box")
    assert focus_point((20, 21, 9)) == ((9, 10, 4), "centre")
    ring = np.zeros((21, 21, 3), bool)  # a ring's centroid is outside it: the nearest ring voxel is used
    ring[5:16, 5:16, 1] = True
    ring[7:14, 7:14, 1] = False
    point, _ = focus_point(ring.shape, ring)
    assert ring[point]


def test_robust_window_ignores_outliers() -> None:
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 100, (50, 50, 20)).astype(np.float32)
    data[0, 0, :5] = 1e6  # a few extreme voxels (a clip, a vessel)
    lo, hi = render.robust_window(data)
    assert 0 <= lo < 2.0 and 98.0 < hi <= 100.0


def test_contour_colours_fill_and_determinism(tmp_path: Path) -> None:
    data, aff = _marker_volume()
    vol = load_volume(_write(tmp_path / "v.nii.gz", data, aff))
    auto = vol.data > 500
    expert = np.zeros_like(auto)
    expert[30:36, 2:6, 7:9] = True
    added = expert & ~auto
    layers = [Layer(auto, MASK_RGB["automatic"]), Layer(expert, MASK_RGB["expert"]),
              Layer(added, MASK_RGB["added"], fill=True)]
    one = render_case(vol, None, layers, series=("post",), planes=("axial",))
    two = render_case(vol, None, layers, series=("post",), planes=("axial",))
    assert one.png == two.png
    rgb = _rgb(one.png["post_axial"]).reshape(-1, 3)
    colours = {tuple(c) for c in rgb}
    assert MASK_RGB["automatic"] in colours and MASK_RGB["expert"] in colours
    assert Image.open(io.BytesIO(one.png["post_axial"])).mode == "RGB"  # a fill needs true colour
    contour_only = render_case(vol, None, layers[:1], series=("post",), planes=("axial",))
    im = Image.open(io.BytesIO(contour_only.png["post_axial"]))
    assert im.mode == "P" and not im.info.get("Software")
    # the contour runs inside the mask's edge: every red... yellow pixel lies within the mask's footprint
    yellow = np.all(np.asarray(im.convert("RGB")) == MASK_RGB["automatic"], axis=2)
    rows, cols = np.nonzero(yellow)
    h, w = yellow.shape
    # mask block: L 32..35 of 40 -> columns 0.8w..0.9w; P 3..5 of 30 -> rows 0.1h..0.2h
    assert cols.min() >= int(0.8 * w) - 1 and cols.max() <= int(0.9 * w) + 1
    assert rows.min() >= int(0.1 * h) - 1 and rows.max() <= int(0.2 * h) + 1


def test_mask_on_another_grid_is_refused(tmp_path: Path) -> None:
    data, aff = _marker_volume()
    vol = load_volume(_write(tmp_path / "v.nii.gz", data, aff))
    shifted = aff.copy()
    shifted[0, 3] += 5.0
    bad = _write(tmp_path / "m.nii.gz", (data > 500).astype(np.uint8), shifted)
    with pytest.raises(ValidationFailed, match="not on the image's grid"):
        load_mask(bad, vol)
    small = _write(tmp_path / "s.nii.gz", np.zeros((4, 4, 4), np.uint8), aff)
    with pytest.raises(ValidationFailed, match="shape"):
        load_mask(small, vol)
