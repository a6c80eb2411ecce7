"""Orthogonal slices of a case as PNG bytes: what a rater (and the correction figures, and the report) look at.

Conventions (stated on every page that shows these pictures):

- Volumes are reoriented to LPS array axes (axis 0 towards the patient's Left, 1 Posterior, 2 Superior) by
  axis permutation/flip only (``nibabel.orientations``; voxels are never resampled). An oblique grid goes to
  its closest LPS axes.
- Radiological display: axial and coronal views show the patient's left on the screen's right (as a
  radiologist facing the patient reads them); axial has anterior at the top, coronal and sagittal superior
  at the top, sagittal anterior on the left.
- Physical aspect: every view of a case has one pixel size in mm (``mm_per_px``), so anisotropic voxels give
  undistorted pictures (a 2 mm-slice sagittal view is not squashed) and views of one case are to scale.
- Robust window: the grey range is the 1st-99.5th percentile of the volume (on a deterministic strided
  subsample), so one bright vessel or clip does not darken the whole picture.
- Overlays (``Layer``) are masks on the image grid drawn as a contour (inside the mask's edge, so the edge
  itself stays visible) or as a translucent fill, each in its colour (``etl.plotstyle.MASK_RGB``).

PNGs are written with Pillow (no matplotlib: a case renders in milliseconds, not seconds), without any
metadata, so the same inputs always give the same bytes. Greyscale-with-contours pictures are palette PNGs
(8 bits per pixel); pictures with fills are RGB.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, SupportsInt

import numpy as np

from etl.errors import InputUnreadable, ValidationFailed
from etl.plotstyle import MASK_RGB
from etl.types import AffineRAS, Shape3, Spacing, StrPath, VoxelIndex

if TYPE_CHECKING:
    from nibabel.spatialimages import SpatialImage

PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")
SERIES: tuple[str, ...] = ("pre", "post", "sub")  # pre-contrast, first post-contrast, subtraction post - pre
LPS = ("L", "P", "S")
WINDOW_PERCENTILES = (1.0, 99.5)
DEFAULT_MAX_PX = 512  # the longest field-of-view extent of a case, in pixels
MAX_UPSCALE = 8.0  # a tiny grid is not blown up further than this many pixels per voxel
_GREY_LEVELS = 248  # palette indices 0..247 grey, 248..255 overlay colours
_SUBSAMPLE_TARGET = 2_000_000  # voxels the window percentiles are computed on, at most (about)
RENDER_VERSION = "1"  # part of the review cache key: bump when the pictures change for the same inputs


@dataclass(frozen=True)
class Volume:
    """A 3-D image on LPS array axes, with its voxel size and how the file's axes map to LPS.

    ``data`` is a view of the file's voxels (the file's numeric dtype, e.g. int16; not copied, not
    contiguous): slicing it is cheap, arithmetic on it works like on any array."""

    data: np.ndarray  # axes (L, P, S)
    spacing: Spacing  # mm along the LPS array axes
    transform: np.ndarray  # nibabel orientation transform (file axes -> LPS axes)
    file_shape: Shape3
    affine: AffineRAS  # the file's affine (to check that masks are on the same grid)
    source: str = ""

    def to_lps_index(self, ijk: Sequence[float]) -> VoxelIndex:
        """A voxel index of the file's array (e.g. a lesion box centre) as an index of ``data``."""
        out = [0, 0, 0]
        for axis, (new_axis, flip) in enumerate(self.transform):
            v = int(round(float(ijk[axis])))
            v = min(max(v, 0), self.file_shape[axis] - 1)
            out[int(new_axis)] = v if flip > 0 else self.file_shape[axis] - 1 - v
        return out[0], out[1], out[2]


@dataclass(frozen=True)
class Layer:
    """A mask drawn over the image: ``mask`` is on the volume's LPS grid (3-D) or already one view (2-D)."""

    mask: np.ndarray
    rgb: tuple[int, int, int] = MASK_RGB["reviewed"]
    fill: bool = False  # False: contour; True: translucent fill
    alpha: float = 0.45  # fill opacity


@dataclass(frozen=True)
class CaseViews:
    """The rendered views of one case: ``png[f"{series}_{plane}"]`` and where the slices cut."""

    png: dict[str, bytes]
    point: VoxelIndex  # LPS voxel index the three planes go through
    point_source: str  # "mask" (largest component's centroid), "box" (lesion box centre) or "centre"
    mm_per_px: float
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # (width, height) px per view


def _index3(values: Iterable[SupportsInt]) -> VoxelIndex:
    """Exactly three integers (a voxel index, or a grid shape)."""
    i, j, k = (int(v) for v in values)
    return i, j, k


def _read_nifti(path: Path) -> SpatialImage:
    """The NIfTI image with its voxels in memory; a .gz is inflated with python-isal when installed
    (about 3x zlib: reading two full-size phases is most of a case's render time)."""
    import nibabel as nib
    from nibabel.spatialimages import SpatialImage

    if path.name.endswith(".gz"):
        try:
            from isal import igzip

            return nib.Nifti1Image.from_bytes(igzip.decompress(path.read_bytes()))
        except ImportError:  # pragma: no cover - isal is a dependency; plain nibabel still works
            pass
        except nib.filebasedimages.ImageFileError:  # e.g. NIfTI-2: let nibabel pick the class
            pass
    img = nib.load(str(path))
    if not isinstance(img, SpatialImage):
        raise InputUnreadable(f"not an image with a voxel grid ({type(img).__name__})", str(path))
    return img


def load_volume(path: StrPath, dtype: type | None = None) -> Volume:
    """Read a NIfTI and view it on LPS array axes (no resampling, no copy); ``dtype`` converts the voxels.

    Non-finite voxels of a float image (NaN outside a resampled field of view) are read as 0."""
    from nibabel import orientations as ornt

    p = Path(path)
    try:
        img = _read_nifti(p)
        if len(img.shape) != 3:
            raise InputUnreadable(f"expected a 3-D image, got shape {img.shape}", str(path))
        arr = np.asanyarray(img.dataobj)
        if arr.dtype == np.float64 or (dtype is not None and arr.dtype != dtype):  # scaled data come as float64
            arr = arr.astype(dtype or np.float32)
    except InputUnreadable:
        raise
    except Exception as exc:  # nibabel, gzip and zlib raise many types for a damaged file
        raise InputUnreadable(f"cannot read NIfTI: {exc}", str(path)) from exc
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            arr = np.where(bad, 0, arr).astype(arr.dtype)
    affine = np.asarray(img.affine, dtype=float)
    transform = ornt.ornt_transform(ornt.io_orientation(affine), ornt.axcodes2ornt(LPS))
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    spacing = [0.0, 0.0, 0.0]
    for axis, (new_axis, _flip) in enumerate(transform):
        spacing[int(new_axis)] = float(zooms[axis])
    data = ornt.apply_orientation(arr, transform)
    return Volume(data, (spacing[0], spacing[1], spacing[2]), transform, _index3(arr.shape), affine, str(path))


def load_mask(path: StrPath, like: Volume) -> np.ndarray:
    """A mask file as a boolean array on ``like``'s LPS grid; refused when it is not on the image's grid."""
    mask = load_volume(path)
    if mask.file_shape != like.file_shape or not np.allclose(mask.affine, like.affine, atol=1e-3):
        where = str(path)
        if mask.file_shape != like.file_shape:
            raise ValidationFailed(f"mask shape {mask.file_shape} differs from the image's {like.file_shape}", where)
        worst = float(np.abs(mask.affine - like.affine).max())
        raise ValidationFailed(f"mask is not on the image's grid (affines differ by up to {worst:.3g})", where)
    return mask.data > 0.5


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    """The smallest box holding every True voxel (the mask must not be empty)."""
    out = []
    for axis in range(mask.ndim):
        hit = np.nonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))[0]
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(out)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component (ties: the one found first in array order).

    Labelling runs on the mask's bounding box only: a lesion is a few thousand voxels of a 30-million
    voxel grid."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    out = np.zeros(mask.shape, bool)
    if not mask.any():
        return out
    box = _bbox(mask)
    labels, n = ndimage.label(mask[box], structure=ndimage.generate_binary_structure(3, 3))
    if n <= 1:
        out[box] = labels > 0
        return out
    sizes = np.bincount(labels.ravel())[1:]
    out[box] = labels == int(np.argmax(sizes)) + 1
    return out


def focus_point(shape: Sequence[int], mask: np.ndarray | None = None,
                box_centre: Sequence[int] | None = None) -> tuple[VoxelIndex, str]:
    """Where the three planes cut: the centroid of the mask's largest component (rounded to the nearest
    voxel), else the lesion box centre (an LPS index), else the image centre; and which one it was."""
    if mask is not None and mask.any():
        box = _bbox(mask)
        comp = largest_component(mask[box])
        idx = np.nonzero(comp)
        local = tuple(int(round(float(np.mean(a)))) for a in idx)
        if not comp[local]:  # a C-shaped lesion: its centroid is outside it; take its nearest voxel instead
            coords = np.stack(idx, axis=1)
            d2 = ((coords - np.asarray(local)) ** 2).sum(axis=1)
            local = tuple(int(v) for v in coords[int(np.argmin(d2))])
        return _index3(int(v) + b.start for v, b in zip(local, box)), "mask"
    if box_centre is not None:
        return _index3(min(max(int(v), 0), n - 1) for v, n in zip(box_centre, shape)), "box"
    return _index3((n - 1) // 2 for n in shape), "centre"


def robust_window(data: np.ndarray, percentiles: tuple[float, float] = WINDOW_PERCENTILES) -> tuple[float, float]:
    """Grey range (low, high) from percentiles of a deterministic strided subsample of the volume."""
    step = max(1, int(round((data.size / _SUBSAMPLE_TARGET) ** (1 / 3))))
    sample = data[::step, ::step, ::step] if data.ndim == 3 else data[::step, ::step]
    lo, hi = (float(v) for v in np.percentile(np.asarray(sample, np.float32), percentiles))
    if not hi > lo:  # a flat image: any range that maps it to one grey
        hi = lo + 1.0
    return lo, hi


def plane_slice(data: np.ndarray, plane: str, point: Sequence[int]) -> np.ndarray:
    """One plane through ``point`` of an LPS array, in display orientation (row 0 at the top, column 0 on
    the left; radiological: the patient's left on the screen's right)."""
    i, j, k = (int(v) for v in point)
    if plane == "axial":  # rows anterior->posterior, columns patient right->left
        return data[:, :, k].T
    if plane == "coronal":  # rows superior->inferior, columns patient right->left
        return data[:, j, :].T[::-1]
    if plane == "sagittal":  # rows superior->inferior, columns anterior->posterior
        return data[i, :, :].T[::-1]
    raise ValueError(f"unknown plane {plane!r}; expected one of {PLANES}")


def plane_spacing(spacing: Sequence[float], plane: str) -> tuple[float, float]:
    """(row, column) pixel size in mm of ``plane_slice`` for a volume of LPS voxel size ``spacing``."""
    sx, sy, sz = (float(v) for v in spacing)
    return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]


def mm_per_pixel(shape: Sequence[int], spacing: Sequence[float], max_px: int = DEFAULT_MAX_PX) -> float:
    """One pixel size for every view of a case: its longest field-of-view extent fills ``max_px`` pixels
    (never more than ``MAX_UPSCALE`` pixels per voxel along the finest axis)."""
    extent = max(float(n) * float(s) for n, s in zip(shape, spacing))
    return max(extent / max_px, min(float(s) for s in spacing) / MAX_UPSCALE)


def _resize(image: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    from PIL import Image

    if (image.shape[1], image.shape[0]) == size:
        return image
    if nearest:
        im = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
        return np.asarray(im.resize(size, Image.Resampling.NEAREST))
    im = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    return np.asarray(im.resize(size, Image.Resampling.BILINEAR))


def _inner_edge(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` 4-steps of its outside (the picture border counts as outside)."""
    inner = mask.copy()
    for _ in range(width):
        pad = np.pad(inner, 1, constant_values=False)
        inner = pad[1:-1, 1:-1] & pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return mask & ~inner


def compose(image: np.ndarray, window: tuple[float, float], pixel_mm: tuple[float, float], mm_per_px: float,
            layers: Sequence[Layer] = ()) -> tuple[np.ndarray, list[tuple[np.ndarray, tuple[int, int, int], float]]]:
    """A display slice scaled to physical size: grey levels 0..247 (uint8) and the overlay pixels to paint
    (boolean picture, colour, opacity: 1.0 for a contour), in drawing order."""
    rows, cols = image.shape
    size = (max(1, int(round(cols * pixel_mm[1] / mm_per_px))), max(1, int(round(rows * pixel_mm[0] / mm_per_px))))
    lo, hi = window
    scaled = _resize(image.astype(np.float32), size, nearest=False)
    grey = np.clip((scaled - lo) / (hi - lo), 0.0, 1.0) * (_GREY_LEVELS - 1)
    grey = np.rint(grey).astype(np.uint8)
    line = 2 if min(size) >= 192 else 1
    paint = []
    for layer in layers:
        if layer.mask.shape != image.shape:
            raise ValueError(f"layer of shape {layer.mask.shape} does not match the slice {image.shape}")
        m = _resize(layer.mask.astype(np.uint8), size, nearest=True).astype(bool)
        if layer.fill:
            paint.append((m, layer.rgb, float(layer.alpha)))
        else:
            paint.append((_inner_edge(m, line), layer.rgb, 1.0))
    return grey, paint


def encode_png(grey: np.ndarray, paint: Sequence[tuple[np.ndarray, tuple[int, int, int], float]] = ()) -> bytes:
    """PNG bytes, no metadata: a palette PNG when every overlay is opaque (contours), RGB otherwise."""
    from PIL import Image

    buf = io.BytesIO()
    colours = list(dict.fromkeys(rgb for _, rgb, a in paint))
    if all(a >= 1.0 for _, _, a in paint) and len(colours) <= 256 - _GREY_LEVELS:
        idx = grey.copy()
        for m, rgb, _ in paint:
            idx[m] = _GREY_LEVELS + colours.index(rgb)
        levels = np.rint(np.arange(_GREY_LEVELS) * 255.0 / (_GREY_LEVELS - 1)).astype(np.uint8)
        palette = [int(v) for g in levels for v in (g, g, g)] + [v for c in colours for v in c]
        im = Image.fromarray(idx, mode="P")
        im.putpalette(palette)
        im.save(buf, format="PNG", compress_level=6)
        return buf.getvalue()
    canvas = np.repeat((grey.astype(np.float32) * (255.0 / (_GREY_LEVELS - 1)))[:, :, None], 3, axis=2)
    for m, colour, alpha in paint:
        canvas[m] = canvas[m] * (1.0 - alpha) + np.asarray(colour, np.float32) * alpha
    Image.fromarray(np.rint(canvas).astype(np.uint8), mode="RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def render_plane(data: np.ndarray, spacing: Sequence[float], plane: str, point: Sequence[int],
                 window: tuple[float, float], mm_per_px: float, layers: Sequence[Layer] = ()) -> bytes:
    """PNG of one plane of an LPS volume through ``point`` with its overlays (3-D layer masks are cut
    through the same point)."""
    cut = [Layer(plane_slice(ly.mask, plane, point) if ly.mask.ndim == 3 else ly.mask, ly.rgb, ly.fill, ly.alpha)
           for ly in layers]
    grey, paint = compose(plane_slice(data, plane, point), window, plane_spacing(spacing, plane), mm_per_px, cut)
    return encode_png(grey, paint)


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) of PNG bytes, from the IHDR chunk."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def render_case(post: Volume, pre: Volume | None = None, layers: Sequence[Layer] = (),
                focus_mask: np.ndarray | None = None, box_centre: Sequence[int] | None = None,
                series: Sequence[str] = ("post", "sub"), planes: Sequence[str] = PLANES,
                max_px: int = DEFAULT_MAX_PX, point: Sequence[int] | None = None) -> CaseViews:
    """Every requested view of a case, through one point, at one pixel size.

    ``focus_mask`` (default: the first layer's mask) chooses the point (see ``focus_point``);
    ``box_centre`` is an LPS index (``Volume.to_lps_index`` of a lesion box centre). Series ``pre`` and
    ``sub`` need ``pre`` on the same grid as ``post``; without it they are left out.
    """
    if pre is not None and (pre.file_shape != post.file_shape or not np.allclose(pre.affine, post.affine, atol=1e-3)):
        raise ValidationFailed("pre-contrast phase is not on the grid of the post-contrast phase", pre.source)
    if focus_mask is None and layers:
        focus_mask = layers[0].mask
    if point is None:
        at, source = focus_point(post.data.shape, focus_mask, box_centre)
    else:
        at, source = _index3(point), "given"
    scale = mm_per_pixel(post.data.shape, post.spacing, max_px)
    out = CaseViews({}, at, source, scale)
    for s in series:
        if s not in SERIES:
            raise ValueError(f"unknown series {s!r}; expected one of {SERIES}")
        if s != "post" and pre is None:
            continue
        if s == "sub":  # post - pre only where it is looked at: three slices and the window's subsample
            assert pre is not None
            step = max(1, int(round((post.data.size / _SUBSAMPLE_TARGET) ** (1 / 3))))
            window = robust_window(np.asarray(post.data[::step, ::step, ::step], np.float32)
                                   - np.asarray(pre.data[::step, ::step, ::step], np.float32))
        else:
            window = robust_window(_shown(s, post, pre).data)
        out.windows[s] = window
        for plane in planes:
            png = _series_plane(s, post, pre, plane, out.point, window, scale, layers)
            out.png[f"{s}_{plane}"] = png
            out.sizes[f"{s}_{plane}"] = png_size(png)
    return out


def _shown(series: str, post: Volume, pre: Volume | None) -> Volume:
    """The volume series ``post`` or ``pre`` shows."""
    if series == "post":
        return post
    if pre is None:
        raise ValueError(f"series {series!r} needs the pre-contrast phase")
    return pre


def _series_plane(series: str, post: Volume, pre: Volume | None, plane: str, point: Sequence[int],
                  window: tuple[float, float], mm_per_px: float, layers: Sequence[Layer]) -> bytes:
    cut = [Layer(plane_slice(ly.mask, plane, point) if ly.mask.ndim == 3 else ly.mask, ly.rgb, ly.fill, ly.alpha)
           for ly in layers]
    if series == "sub":
        assert pre is not None
        image = (np.asarray(plane_slice(post.data, plane, point), np.float32)
                 - np.asarray(plane_slice(pre.data, plane, point), np.float32))
    else:
        image = np.asarray(plane_slice(_shown(series, post, pre).data, plane, point), np.float32)
    grey, paint = compose(image, window, plane_spacing(post.spacing, plane), mm_per_px, cut)
    return encode_png(grey, paint)


def render_files(post: StrPath, pre: StrPath | None = None, masks: Mapping[str, StrPath] | None = None,
                 colours: Mapping[str, tuple[int, int, int]] | None = None, *, box_centre: Sequence[int] | None = None,
                 series: Sequence[str] = ("post", "sub"), planes: Sequence[str] = PLANES,
                 max_px: int = DEFAULT_MAX_PX, point: Sequence[int] | None = None) -> CaseViews:
    """``render_case`` from file paths: each mask in ``masks`` (name -> path) is drawn as a contour in
    ``colours[name]`` (default ``MASK_RGB[name]``, else the reviewed-mask red); the first one chooses the point.
    The keyword arguments are ``render_case``'s."""
    post_v = load_volume(post)
    pre_v = load_volume(pre) if pre is not None else None
    layers = []
    for name, path in (masks or {}).items():
        rgb = (colours or {}).get(name) or MASK_RGB.get(name, MASK_RGB["reviewed"])
        layers.append(Layer(load_mask(path, post_v), rgb))
    return render_case(post_v, pre_v, layers, box_centre=box_centre, series=series, planes=planes, max_px=max_px,
                       point=point)
