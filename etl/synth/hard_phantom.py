"""The "hard" phantom preset: a breast DCE-MRI phantom that FTV and the tiny model are not built to pass.

The easy phantom (``etl.synth.phantom.make_phantom``) has a compact lesion enhancing 140-240 % against FTV's
70 % threshold, weak uniform parenchymal enhancement, Gaussian noise and no motion: FTV finds it by
construction. Segmentation figures measured there are consistency checks. This preset keeps the same
anatomy (same seed, same body) and adds what makes real breast DCE-MRI hard, with parameters drawn from
published ranges, never tuned to make a method pass or fail:

- Lesion enhancement at the first post-contrast phase: case mean 50-250 % (BI-RADS initial phase "medium"
  50-100 % to "rapid" > 100 %; Kuhl et al., Radiology 1999), heterogeneous inside the lesion (smooth
  texture, coefficient of variation ~0.35; masses with a rim pattern half the time) and blurred by the
  point-spread function at the boundary (partial volume): some lesion voxels stay below 70 %.
- Kinetics per case: persistent, plateau or wash-out (types I/II/III), roughly equally likely.
- Lesion shape: half the cases an irregular mass (lobulated ellipsoid with a noisy margin), half non-mass
  enhancement in a segmental distribution (a cone pointing to the nipple) with clumped internal pattern
  (BI-RADS NME descriptors): several disconnected clumps, all of them the lesion.
- Background parenchymal enhancement (BPE) of the fibroglandular tissue at the first post-contrast phase:
  minimal/mild 10-30 % (60 % of cases), moderate 30-60 % (30 %), marked 60-90 % (10 %), patchy (log-normal
  texture, so some parenchyma passes 70 % when the level is moderate or marked), rising further in later
  phases (progressive), plus 0-3 benign enhancing foci (< 5 mm, 80-200 %); pectoral muscle enhances 15-40 %.
- Rigid motion between phases: the first post-contrast phase is the reference (the expert mask is drawn
  on it); every other phase is translated by 0.3-1.0 voxel in a random direction (spline interpolation).
- A smooth multiplicative receive-bias field (log amplitude 0.1-0.25 sd, i.e. roughly +-20-50 % across
  the field of view), fixed to the scanner: it does not move with the patient.
- Rician noise: magnitude of the complex signal with Gaussian noise of sd sigma in each channel, sigma
  set by an SNR of 15-30 in pre-contrast fibroglandular tissue.

Not modelled: heart and vessels (strong enhancers outside the breast), B1-transmit effects on the
enhancement itself, non-rigid motion, fat-suppression failures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from etl.synth.phantom import Anatomy, Phantom, _acquisition_times, _smooth_noise, lesion_centre, make_anatomy

LESION_KINDS = ("mass", "nme")


@dataclass(frozen=True)
class HardPhantom:
    """A hard phantom and the truth behind it (what the tests check the preset's properties against)."""

    phantom: Phantom
    kind: str  # "mass" or "nme" (non-mass enhancement, segmental and clumped)
    lesion_enhancement: np.ndarray  # float32, relative enhancement of lesion tissue at the first post phase
    background_enhancement: np.ndarray  # float32, same for BPE, foci and muscle (0 elsewhere)
    bpe_level: float  # case BPE level of the fibroglandular tissue at the first post phase (mean before the
    #                   point-spread blur; blurred, the mean over the tissue is ~0.8-0.95x this)
    shifts_vox: np.ndarray  # (n_phases, 3) translation of each phase against the reference, in voxels
    reference_phase: int  # the phase the mask is drawn on (no shift)
    bias: np.ndarray  # float32 multiplicative receive field, identical in every phase
    noise_sigma: float  # sd of the Gaussian noise in each of the two channels (Rician magnitude)


def _irregular_mass(rng: np.random.Generator, anatomy: Anatomy, centre: np.ndarray) -> np.ndarray:
    """1-3 overlapping ellipsoidal lobes whose margin is perturbed by fine smooth noise (irregular margin)."""
    shape = anatomy.base.shape
    x, y, z = anatomy.grid
    spacing = np.array(anatomy.spacing)
    fov = np.array(shape) * spacing
    r_base = max(0.07 * min(fov[0], fov[1]) * rng.uniform(0.7, 1.3), 2.2 * spacing.max())
    rnorm = np.full(shape, np.inf, dtype=np.float32)
    for lobe in range(int(rng.integers(1, 4))):
        offset = np.zeros(3) if lobe == 0 else rng.normal(0, 0.6 * r_base, 3)
        radii = np.maximum(r_base * rng.uniform(0.6, 1.0, 3) * (1.0 if lobe == 0 else 0.7), 1.6 * spacing)
        c = centre + offset
        r = np.sqrt(((x - c[0]) / radii[0]) ** 2 + ((y - c[1]) / radii[1]) ** 2 + ((z - c[2]) / radii[2]) ** 2)
        rnorm = np.minimum(rnorm, r)
    margin = _smooth_noise(rng, shape, anatomy.spacing, sigma_mm=max(1.5, 0.6 * spacing.min()))
    return (rnorm <= 1.0 + 0.3 * margin) & anatomy.breast


def _segmental_nme(rng: np.random.Generator, anatomy: Anatomy, centre: np.ndarray) -> np.ndarray:
    """Clumped enhancement inside a cone whose apex points to the nipple (segmental distribution)."""
    shape = anatomy.base.shape
    x, y, z = anatomy.grid
    spacing = np.array(anatomy.spacing)
    length = rng.uniform(20.0, 40.0)  # mm along the duct system
    half_angle = np.radians(rng.uniform(15.0, 30.0))
    d = np.array([rng.normal(0, 0.25), 1.0, rng.normal(0, 0.15)])  # +y: from the nipple towards the chest wall
    d /= np.linalg.norm(d)
    apex = centre - 0.5 * length * d
    px, py, pz = x - apex[0], y - apex[1], z - apex[2]
    t = px * d[0] + py * d[1] + pz * d[2]
    rho = np.sqrt(np.maximum((px**2 + py**2 + pz**2) - t**2, 0.0))
    cone = (t >= 0) & (t <= length) & (rho <= np.maximum(t * np.tan(half_angle), spacing[:2].max()))
    clumps = _smooth_noise(rng, shape, anatomy.spacing, sigma_mm=max(1.5, 0.75 * spacing.min()))
    return cone & (clumps > rng.uniform(-0.2, 0.3)) & anatomy.breast


def _kinetics(rng: np.random.Generator, times: list[int], reference: int) -> tuple[np.ndarray, np.ndarray]:
    """Per phase, relative to the first post-contrast value: (lesion curve, background curve)."""
    t = np.asarray(times, dtype=float)
    lesion = np.zeros_like(t)
    background = np.zeros_like(t)
    if len(t) > 1:
        kind = int(rng.integers(3))  # 0 persistent (type I), 1 plateau (II), 2 wash-out (III)
        per_5min = (rng.uniform(0.1, 0.3), rng.uniform(-0.1, 0.1), -rng.uniform(0.1, 0.3))[kind]
        t1 = t[reference]
        lesion[1:] = np.maximum(1.0 + per_5min * (t[1:] - t1) / 300.0, 0.0)
        background[1:] = (1 - np.exp(-t[1:] / 300.0)) / (1 - np.exp(-t1 / 300.0))  # progressive
    return lesion.astype(np.float32), background.astype(np.float32)


def _bpe_level(rng: np.random.Generator) -> float:
    u = rng.random()
    if u < 0.6:
        return float(rng.uniform(0.10, 0.30))  # minimal / mild
    if u < 0.9:
        return float(rng.uniform(0.30, 0.60))  # moderate
    return float(rng.uniform(0.60, 0.90))  # marked


def _foci(rng: np.random.Generator, anatomy: Anatomy, avoid: np.ndarray) -> np.ndarray:
    """0-3 benign enhancing foci (< 5 mm) in fibroglandular tissue away from the lesion; enhancement map."""
    shape = anatomy.base.shape
    x, y, z = anatomy.grid
    out = np.zeros(shape, dtype=np.float32)
    candidates = np.argwhere(anatomy.fgt & ~avoid)
    for _ in range(int(rng.integers(0, 4))):
        if len(candidates) == 0:
            break
        idx = candidates[int(rng.integers(len(candidates)))]
        c = [(idx[i] - (shape[i] - 1) / 2.0) * anatomy.spacing[i] for i in range(3)]
        r = np.maximum(rng.uniform(1.5, 2.5), 0.6 * np.array(anatomy.spacing))
        blob = ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1.0
        out = np.maximum(out, np.where(blob & anatomy.breast, np.float32(rng.uniform(0.8, 2.0)), 0).astype(np.float32))
    return out


def _shifts(rng: np.random.Generator, n_phases: int, reference: int) -> np.ndarray:
    """Translation of every phase against the reference phase: 0.3-1.0 voxel in a random direction."""
    out = np.zeros((n_phases, 3))
    for k in range(n_phases):
        if k != reference:
            d = rng.normal(size=3)
            out[k] = d / np.linalg.norm(d) * rng.uniform(0.3, 1.0)
    return out


def _bias_field(rng: np.random.Generator, shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    """exp(a * f): f smooth over ~a third of the field of view, zero mean and unit sd; a = 0.1-0.25.

    ``_smooth_noise`` keeps the mean of its white noise, which dominates at this smoothness; it is removed
    here so the field modulates the signal around 1 instead of scaling the whole image.
    """
    field = _smooth_noise(rng, shape, spacing, sigma_mm=0.3 * float(max(np.array(shape) * np.array(spacing))))
    field = field - field.mean()
    sd = float(field.std())
    return np.exp(rng.uniform(0.1, 0.25) * field / (sd if sd > 0 else 1.0)).astype(np.float32)


def build_hard_phantom(
    seed: int,
    shape: tuple[int, int, int] = (64, 64, 24),
    spacing: tuple[float, float, float] = (2.0, 2.0, 4.0),
    n_phases: int = 4,
    bilateral: bool = True,
    fat_suppressed: bool = True,
    kind: str | None = None,
) -> HardPhantom:
    """A deterministic hard phantom for ``seed`` with its truth (see the module docstring for the model).

    The anatomy is the easy phantom's for the same seed; ``kind`` forces "mass" or "nme" (default: drawn).
    """
    shape = tuple(int(n) for n in shape)  # type: ignore[assignment]
    spacing = tuple(float(s) for s in spacing)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"shape must be three axes of at least 4 voxels, got {shape}")
    if n_phases < 2:
        raise ValueError("a hard phantom needs a pre- and a post-contrast phase")
    rng = np.random.default_rng(seed)
    anatomy = make_anatomy(rng, shape, spacing, bilateral, fat_suppressed)
    levels = anatomy.levels
    voxel_sigma = 0.5  # point-spread function, voxels (partial volume at every tissue edge that enhances)

    _, centre = lesion_centre(rng, anatomy)
    draw_kind = LESION_KINDS[int(rng.integers(2))]
    kind = kind or draw_kind
    if kind not in LESION_KINDS:
        raise ValueError(f"kind must be one of {LESION_KINDS}, got {kind!r}")
    lesion = _irregular_mass(rng, anatomy, centre) if kind == "mass" else _segmental_nme(rng, anatomy, centre)
    if not lesion.any():  # a cone clipped away entirely: fall back to one voxel-sized clump at the centre
        idx = tuple(int(round(c / s + (n - 1) / 2.0)) for c, s, n in zip(centre, spacing, shape))
        lesion = np.zeros(shape, bool)
        lesion[idx] = True
    mask = lesion.astype(np.uint8)

    # Lesion enhancement: case mean 50-250 %, smooth heterogeneity, rim pattern for half the masses.
    mean = rng.uniform(0.5, 2.5)
    texture = _smooth_noise(rng, shape, spacing, sigma_mm=max(2.0, min(spacing)))
    modulation = np.clip(1.0 + 0.35 * texture, 0.15, None)
    if kind == "mass" and rng.random() < 0.5:
        inner = ndimage.distance_transform_edt(lesion, sampling=spacing)
        depth = inner / max(float(inner.max()), 1e-6)
        modulation = modulation * (1.0 - 0.5 * depth)  # rim enhancement: the centre enhances half as much
    occupancy = ndimage.gaussian_filter(lesion.astype(np.float32), voxel_sigma)
    shape_e = modulation * occupancy
    # Scaled so the mean over the lesion mask is the drawn case mean (what an ROI measurement reports);
    # texture, rim and partial volume only redistribute it. Unscaled, the mask mean was 0.4-0.9x the draw.
    lesion_e = (mean * shape_e / float(shape_e[lesion].mean())).astype(np.float32)

    # Background: patchy progressive BPE of fibroglandular tissue, benign foci, enhancing muscle.
    bpe_level = _bpe_level(rng)
    patch = _smooth_noise(rng, shape, spacing, sigma_mm=max(4.0, 2 * min(spacing)))
    bpe = np.where(anatomy.fgt, bpe_level * np.exp(0.5 * patch - 0.125), 0.0).astype(np.float32)
    avoid = ndimage.binary_dilation(lesion, iterations=2)
    bpe = np.maximum(bpe, _foci(rng, anatomy, avoid))
    bpe = np.where(anatomy.muscle, np.float32(rng.uniform(0.15, 0.4)), bpe).astype(np.float32)
    bpe = ndimage.gaussian_filter(bpe, voxel_sigma) * (1.0 - occupancy)

    base = anatomy.base.copy()
    base[lesion] = levels["lesion"]
    times = _acquisition_times(rng, n_phases)
    reference = 1
    lesion_curve, background_curve = _kinetics(rng, times, reference)
    shifts = _shifts(rng, n_phases, reference)
    bias = _bias_field(rng, shape, spacing)
    sigma = float(levels["fgt"] / rng.uniform(15.0, 30.0))

    phases = np.empty((n_phases,) + shape, dtype=np.float32)
    for k in range(n_phases):
        obj = base * (1.0 + lesion_curve[k] * lesion_e + background_curve[k] * bpe)
        if shifts[k].any():
            obj = ndimage.shift(obj, shifts[k], order=3, mode="nearest")
        signal = np.maximum(obj, 0.0) * bias
        real = signal + sigma * rng.standard_normal(shape, dtype=np.float32)
        imag = sigma * rng.standard_normal(shape, dtype=np.float32)
        phases[k] = np.hypot(real, imag)
    ph = Phantom(phases=phases, mask=mask, spacing=spacing, acquisition_times=times)
    return HardPhantom(phantom=ph, kind=kind, lesion_enhancement=lesion_e, background_enhancement=bpe.astype(np.float32),
                       bpe_level=bpe_level, shifts_vox=shifts, reference_phase=reference, bias=bias, noise_sigma=sigma)


def make_hard_phantom(seed: int, **kwargs: object) -> Phantom:
    """The phantom alone (what ``stage_phantoms(..., preset="hard")`` writes); see ``build_hard_phantom``."""
    return build_hard_phantom(seed, **kwargs).phantom  # type: ignore[arg-type]
