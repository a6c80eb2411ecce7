"""Seeded breast DCE-MRI phantom on a voxel grid (pure numpy, no DICOM).

The phantom is the ground truth every later stage is tested against: the DICOM writer slices it into
files, the converter must give it back voxel for voxel, and the segmentation stage must find its lesion.

Array axes follow the DICOM patient system (LPS+): axis 0 runs towards the patient's Left, axis 1 towards
Posterior, axis 2 towards Superior. Anatomy is laid out in millimetres relative to the field of view, so
the same seed gives the same anatomy at 64x64x24 or at 512x512x120 (only sampled more finely).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Pre-contrast signal levels (arbitrary MR units) of each tissue, with and without fat suppression.
_TISSUE = {
    True: {"air": 6.0, "fat": 70.0, "fgt": 230.0, "muscle": 160.0, "skin": 190.0, "lesion": 210.0},
    False: {"air": 6.0, "fat": 420.0, "fgt": 230.0, "muscle": 150.0, "skin": 260.0, "lesion": 200.0},
}


@dataclass(frozen=True)
class Phantom:
    """Signal per phase, the lesion mask and the grid geometry (see the module docstring for axes)."""

    phases: np.ndarray  # float32, (n_phases, nx, ny, nz)
    mask: np.ndarray  # uint8, (nx, ny, nz), 1 inside the lesion
    spacing: tuple[float, float, float]  # mm along the three array axes
    acquisition_times: list[int]  # seconds from the first phase, [0, ...], len n_phases


_TEXTURE_GRID = 96  # texture is computed on at most this many points per axis, then repeated (memory, speed)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], spacing: tuple[float, ...],
                  sigma_mm: float) -> np.ndarray:
    """Gaussian-filtered white noise (FFT, so no scipy), scaled to unit standard deviation.

    Large grids (full-size 512x512x120) get the texture on a coarser grid repeated up to full size, so
    the FFT stays small; the texture is smooth at that scale anyway.
    """
    factors = [max(1, -(-n // _TEXTURE_GRID)) for n in shape]
    if any(f > 1 for f in factors):
        coarse_shape = tuple(-(-n // f) for n, f in zip(shape, factors))
        coarse = _smooth_noise(rng, coarse_shape, tuple(s * f for s, f in zip(spacing, factors)), sigma_mm)
        for axis, f in enumerate(factors):
            coarse = np.repeat(coarse, f, axis=axis)
        return coarse[tuple(slice(0, n) for n in shape)].astype(np.float32)
    white = rng.standard_normal(shape)
    freqs = np.meshgrid(*[np.fft.fftfreq(n, d=s) for n, s in zip(shape, spacing)], indexing="ij", sparse=True)
    k2 = sum(f**2 for f in freqs)
    filt = np.exp(-2.0 * (np.pi * sigma_mm) ** 2 * k2)
    out = np.fft.ifftn(np.fft.fftn(white) * filt).real
    sd = out.std()
    return (out / sd if sd > 0 else out).astype(np.float32)


def _acquisition_times(rng: np.random.Generator, n_phases: int) -> list[int]:
    """Pre-contrast at 0, then post-contrast phases at a steady cadence (typical 60-180 s)."""
    if n_phases < 1:
        raise ValueError("n_phases must be >= 1")
    first = int(rng.integers(90, 240))
    step = int(rng.integers(60, 180))
    return [0] + [first + step * k for k in range(n_phases - 1)]


def _lesion_curve(rng: np.random.Generator, times: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Relative enhancement per phase for the lesion (fast wash-in, wash-out) and the parenchyma (slow, weak)."""
    t = np.asarray(times, dtype=float)
    post = t - t[0]
    peak = rng.uniform(1.4, 2.4)  # 140-240 % enhancement at the first post-contrast phase
    washout = rng.uniform(0.0015, 0.003)  # per second after the first post-contrast phase
    lesion = np.zeros_like(t)
    bpe = np.zeros_like(t)
    if len(t) > 1:
        t1 = post[1]
        lesion[1:] = peak * np.exp(-washout * (post[1:] - t1))
        bpe_gain = rng.uniform(0.08, 0.2)
        bpe[1:] = bpe_gain * (1 - np.exp(-post[1:] / 300.0)) / (1 - np.exp(-t1 / 300.0)) * 0.6
        bpe = np.minimum(bpe, 0.3)
    return lesion.astype(np.float32), bpe.astype(np.float32)


def _grid(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    """Voxel-centre coordinates in mm, origin at the centre of the field of view."""
    axes = [(np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(shape, spacing)]
    return tuple(np.meshgrid(*axes, indexing="ij", sparse=True))


@dataclass(frozen=True)
class Anatomy:
    """The pre-contrast body of a phantom, before any lesion: what the easy and the hard presets share."""

    base: np.ndarray  # float32 pre-contrast signal, (nx, ny, nz)
    grid: tuple[np.ndarray, ...]  # voxel-centre coordinates in mm (sparse x, y, z)
    spacing: tuple[float, float, float]
    levels: dict[str, float]  # tissue signal levels used
    torso: np.ndarray  # bool, body behind the chest wall
    muscle: np.ndarray  # bool, pectoral muscle layer
    breast: np.ndarray  # bool, every breast
    breasts: list[np.ndarray]  # bool, one per breast
    cores: list[np.ndarray]  # bool, the inner part of each breast (a lesion there is not clipped by the skin)
    fgt: np.ndarray  # bool, fibroglandular tissue
    tex: np.ndarray  # float32 unit-sd texture the fibroglandular tissue was thresholded from
    y_chest: float  # chest-wall plane, mm along axis 1 (the breasts lie at y < y_chest)
    ay: float  # breast depth, mm (nipple at y_chest - ay)


def make_anatomy(rng: np.random.Generator, shape: tuple[int, int, int], spacing: tuple[float, float, float],
                 bilateral: bool = True, fat_suppressed: bool = True) -> Anatomy:
    """Torso, pectoral muscle, one or two half-ellipsoid breasts and their fibroglandular texture."""
    fov = np.array(shape) * np.array(spacing)
    x, y, z = _grid(shape, spacing)
    levels = _TISSUE[bool(fat_suppressed)]

    # Chest wall: a plane at ~55 % of the A-P extent; body behind it is an elliptic torso.
    y_chest = fov[1] * rng.uniform(0.02, 0.1)
    torso = ((x / (0.48 * fov[0])) ** 2 + ((y - y_chest - 0.5 * fov[1]) / (0.75 * fov[1])) ** 2 <= 1.0) & (y >= y_chest)
    torso = np.broadcast_to(torso, shape)
    muscle = torso & (y < y_chest + 0.12 * fov[1])
    muscle = np.broadcast_to(muscle, shape)

    # Breasts: half-ellipsoids anterior of the chest wall.
    if bilateral:
        centres = [-0.22 * fov[0], 0.22 * fov[0]]
        ax = 0.19 * fov[0]
    else:
        centres = [rng.uniform(-0.05, 0.05) * fov[0]]
        ax = 0.36 * fov[0]
    ay = (y_chest + 0.5 * fov[1]) * rng.uniform(0.78, 0.9)  # reaches close to the anterior FOV edge
    az = 0.4 * fov[2]
    breasts = []
    cores = []
    for cx in centres:
        axx = ax * rng.uniform(0.92, 1.05)
        r2 = ((x - cx) / axx) ** 2 + ((y - y_chest) / ay) ** 2 + (z / az) ** 2
        breasts.append(np.broadcast_to((r2 <= 1.0) & (y < y_chest), shape))
        cores.append(np.broadcast_to((r2 <= 0.3) & (y < y_chest - 0.15 * ay), shape))
    breast = np.logical_or.reduce(breasts)

    # Fibroglandular texture: smoothed noise above a threshold, denser towards the breast centre.
    tex = _smooth_noise(rng, shape, spacing, sigma_mm=max(3.0, 0.025 * fov[0]))
    depth = np.clip(1.0 - np.abs(y - y_chest) / ay, 0, 1)  # 1 at chest wall, 0 at nipple
    fgt = breast & (tex + 0.8 * (0.5 - np.abs(depth - 0.5)) > rng.uniform(0.3, 0.7))

    base = np.full(shape, levels["air"], dtype=np.float32)
    base[torso] = levels["fat"]
    base[muscle] = levels["muscle"]
    base[breast] = levels["fat"]
    base[fgt] = levels["fgt"] * (1.0 + 0.08 * tex[fgt])
    return Anatomy(base=base, grid=(x, y, z), spacing=spacing, levels=levels, torso=torso, muscle=muscle,
                   breast=breast, breasts=breasts, cores=cores, fgt=fgt, tex=tex, y_chest=float(y_chest), ay=float(ay))


def lesion_centre(rng: np.random.Generator, anatomy: Anatomy) -> tuple[int, np.ndarray]:
    """(breast index, centre in mm) of a lesion: a fibroglandular voxel of one breast's core, drawn at random."""
    shape = anatomy.base.shape
    side = int(rng.integers(len(anatomy.breasts)))
    candidates = np.argwhere(anatomy.cores[side] & anatomy.fgt)
    if len(candidates) == 0:
        candidates = np.argwhere(anatomy.cores[side])
    if len(candidates) == 0:
        candidates = np.argwhere(anatomy.breasts[side])
    if len(candidates) == 0:
        raise ValueError(f"field of view {shape} too small for a breast")
    centre_idx = candidates[int(rng.integers(len(candidates)))]
    return side, np.array([(centre_idx[i] - (shape[i] - 1) / 2.0) * anatomy.spacing[i] for i in range(3)])


def make_phantom(
    seed: int,
    shape: tuple[int, int, int] = (64, 64, 24),
    spacing: tuple[float, float, float] = (2.0, 2.0, 4.0),
    n_phases: int = 4,
    bilateral: bool = True,
    lesion: bool = True,
    fat_suppressed: bool = True,
) -> Phantom:
    """Build a deterministic phantom for ``seed`` (the "easy" preset; ``etl.synth.hard_phantom`` is the hard one).

    One (unilateral) or two (bilateral) half-ellipsoid breasts protrude anteriorly from a chest wall;
    inside each, smoothed noise thresholded into fibroglandular tissue. One ellipsoidal or lobulated lesion
    sits in fibroglandular tissue of one breast and enhances strongly at phase 1 then washes out; the
    parenchyma enhances weakly. Gaussian noise is added per phase. Every lesion voxel enhances 140-240 %,
    far above FTV's 70 % threshold, and no parenchyma reaches it: FTV finds this lesion by construction, so
    a Dice measured here is a consistency check of the segmentation stage, not of a method.
    """
    shape = tuple(int(n) for n in shape)  # type: ignore[assignment]
    spacing = tuple(float(s) for s in spacing)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"shape must be three axes of at least 4 voxels, got {shape}")
    rng = np.random.default_rng(seed)
    fov = np.array(shape) * np.array(spacing)
    anatomy = make_anatomy(rng, shape, spacing, bilateral, fat_suppressed)
    x, y, z = anatomy.grid
    levels, base, fgt, breast = anatomy.levels, anatomy.base, anatomy.fgt, anatomy.breast

    # Lesion: inside fibroglandular tissue of one breast, 1-3 lobes.
    mask = np.zeros(shape, dtype=np.uint8)
    if lesion:
        _, centre = lesion_centre(rng, anatomy)
        r_base = max(0.07 * min(fov[0], fov[1]) * rng.uniform(0.7, 1.2), 2.2 * max(spacing))
        for lobe in range(int(rng.integers(1, 4))):
            offset = np.zeros(3) if lobe == 0 else rng.normal(0, 0.5 * r_base, 3)
            radii = r_base * rng.uniform(0.6, 1.0, 3) * (1.0 if lobe == 0 else 0.7)
            radii = np.maximum(radii, 1.6 * np.array(spacing))
            c = centre + offset
            inside = ((x - c[0]) / radii[0]) ** 2 + ((y - c[1]) / radii[1]) ** 2 + ((z - c[2]) / radii[2]) ** 2 <= 1.0
            mask |= np.broadcast_to(inside, shape).astype(np.uint8)
        mask &= breast.astype(np.uint8)
        base[mask.astype(bool)] = levels["lesion"]

    times = _acquisition_times(rng, n_phases)
    lesion_curve, bpe_curve = _lesion_curve(rng, times)
    noise_sd = 0.025 * levels["fgt"]
    phases = np.empty((n_phases,) + shape, dtype=np.float32)
    lesion_bool = mask.astype(bool)
    for k in range(n_phases):
        vol = base.copy()
        vol[fgt] *= 1.0 + bpe_curve[k]
        vol[lesion_bool] *= 1.0 + lesion_curve[k]
        vol += rng.standard_normal(shape, dtype=np.float32) * np.float32(noise_sd)
        phases[k] = np.abs(vol)  # magnitude images are non-negative (Rician-like floor in air)
    return Phantom(phases=phases, mask=mask, spacing=spacing, acquisition_times=times)
