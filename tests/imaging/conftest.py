"""Shared synthetic studies for the imaging tests (written once per session)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from etl.synth.dicom import LAYOUTS, VENDORS, VIEWS, StudySpec, StudyTruth, write_study

# every vendor x layout x view (the test modules build the same list for their parametrization)
COMBOS = list(itertools.product(VENDORS, LAYOUTS, VIEWS))


def combo_spec(vendor: str, layout: str, view: str) -> StudySpec:
    """Small studies that still exercise everything: obliquity on some, unilateral sagittal, 3 phases."""
    oblique = 4.0 if (vendor, view) in {("GE", "axial"), ("SIEMENS", "sagittal"), ("Philips", "axial")} else 0.0
    return StudySpec(patient_id=f"SYN_{vendor}_{layout}_{view}".upper(), vendor=vendor, view=view, layout=layout,
                     n_phases=3, matrix=(40, 48), n_slices=12, pixel_spacing=(2.5, 2.0), slice_spacing=3.0,
                     oblique_deg=oblique, bilateral=view == "axial", fat_suppressed=vendor != "SIEMENS")


@pytest.fixture(scope="session")
def studies(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], StudyTruth]:
    root = tmp_path_factory.mktemp("studies")
    out = {}
    for i, combo in enumerate(COMBOS):
        out[combo] = write_study(root / "_".join(combo), combo_spec(*combo), seed=100 + i)
    return out


@pytest.fixture(scope="session")
def converted(studies, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every study converted once per profile through the library entry point."""
    from etl.commands.convert import CaseJob, convert_case

    roots = {}
    for profile in ("mama-mia-v1", "challenge"):
        root = tmp_path_factory.mktemp(f"staged-{profile}")
        for truth in studies.values():
            convert_case(CaseJob(str(truth.root), str(root), truth.spec.patient_id, profile))
        roots[profile] = root
    return roots
