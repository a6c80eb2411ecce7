"""Staged cases built from ``etl.synth.phantom`` (training data for the tiny model, tests, benchmarks).

The test-data generator depends on the product (it writes staged cases the segment stage reads), never the
reverse: ``etl.segment`` imports nothing from ``etl.synth``.

The phantom's array axes run Left, Posterior, Superior (LPS+); NIfTI affines map to RAS+, so the
affine is diag(-sx, -sy, sz): ``aff2axcodes`` reports ('L', 'P', 'S'), the v1 axial profile.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from etl.layout import Layout
from etl.segment.io import write_nifti
from etl.synth.hard_phantom import make_hard_phantom
from etl.synth.phantom import Phantom, make_phantom


def phantom_affine(spacing: tuple[float, float, float], shape: tuple[int, int, int]) -> np.ndarray:
    sx, sy, sz = spacing
    aff = np.diag([-sx, -sy, sz, 1.0])
    # World origin at the centre of the field of view, as the phantom's millimetre grid has it.
    centre = (np.asarray(shape) - 1) / 2.0
    aff[:3, 3] = -aff[:3, :3] @ centre
    return aff


def stage_phantom(layout: Layout, patient_id: str, ph: Phantom, expert: bool = True) -> None:
    """Write a phantom as one staged case: int16 phases (like converted DICOM) and the expert mask."""
    shape = ph.mask.shape
    aff = phantom_affine(ph.spacing, shape)
    like = nib.Nifti1Image(np.zeros(shape, np.int16), aff)
    like.set_qform(aff, 1)
    like.set_sform(aff, 1)
    like.header.set_xyzt_units("mm", "sec")
    for k, vol in enumerate(ph.phases):
        write_nifti(layout.image(patient_id, k), np.rint(vol), like, dtype=np.int16, level=1)
    if expert:
        write_nifti(layout.expert_mask(patient_id), ph.mask, like, dtype=np.uint8, level=1)


# "easy": the lesion FTV finds by construction (tests, demo, consistency checks); "hard": weak heterogeneous
# and non-mass lesions, background enhancement, motion, bias and Rician noise (benchmarks/segment.py).
PRESETS: dict[str, Callable[..., Phantom]] = {"easy": make_phantom, "hard": make_hard_phantom}


def stage_phantoms(root: str | Path, seeds: list[int], prefix: str = "SYN", expert: bool = True,
                   preset: str = "easy", **phantom_kwargs: object) -> list[str]:
    """Stage one case per seed under ``root``; returns the patient ids (``SYN_<seed>``).

    ``preset`` picks the phantom kind (``PRESETS``); the default stays "easy" so existing tests and the
    demo keep their exact outputs.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown phantom preset {preset!r}; expected one of {', '.join(PRESETS)}")
    make = PRESETS[preset]
    layout = Layout.from_definition(root)
    ids = []
    for seed in seeds:
        pid = f"{prefix}_{seed:04d}"
        stage_phantom(layout, pid, make(seed, **phantom_kwargs), expert=expert)
        ids.append(pid)
    return ids
