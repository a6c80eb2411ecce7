"""The series_filter rules (schemas/imaging_headers.yaml): series that share the DCE geometry but are not DCE
(derived maps, subtractions, non-fat-sat T1...) are ignored, listed with their rule, never an error, and
taken again with `mamamia convert --all-series`."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from etl.layout import Layout
from etl.synth.dicom import StudySpec, StudyTruth, write_study
from etl.synth.dicom import add_series as synth_add_series
from etl.transform.dicom import filter_series, scan, series_filter_rules

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# Real DCE series descriptions (GE, Siemens, Philips; I-SPY1, Duke, ISPY2, NACT): no rule may fire on them.
DCE_DESCRIPTIONS = [
    "Ax Vibrant MultiPhase", "Ax Vibrant MultiPhase FS", "DYN", "dyn eTHRIVE", "DYN eTHRIVE SPAIR",
    "T1 fl3d dyn", "ax 3d dyn MP", "fl3d_dynamic", "t1_fl3d_tra_dynaViews_spair", "BILAT SAG VIBRANT DYNAMIC",
    "ax dyn pre", "ax dyn 1st pass", "ax 3d dyn", "1st ax dyn", "ax dyn fl3d_fs", "ax dyn fl3d non-fs",
    "Ax VIBRANT MPh", "SAG VIBRANT BILAT DYN", "T1_fl3d_tra_dyn_FS", "ISPY2: VOLSER: uni-lateral cropped: original",
    "Sag Dynamic", "3D SAG T1 FS", "ax vibrant fs pre", "ax vibrant fs post 1", "Dynamic-3dfgre",
    "t1_vibe_fs_tra_dyn", "T1W_FFE_DYN", "sag 3d spgr fs", "Ax T1 FS dyn", "Ax 3D T1 bilateral",
    "ax dyn ser 2", "Ser#3 dyn", "DYN ser_4",
]

# Non-DCE series that share the DCE geometry in real studies -> the rule that must fire first.
NON_DCE = [
    ("SUB", "subtraction"), ("Ax Vibrant SUB 1", "subtraction"), ("subtraction", "subtraction"),
    ("sub_ax dyn", "subtraction"), ("SUB1 ax dyn", "subtraction"), ("MIP", "mip"), ("sag MIP SUB", "subtraction"),
    ("Maximum Intensity Projection", "mip"), ("PE2", "parametric_map"), ("PE6", "parametric_map"),
    ("SER", "parametric_map"), ("Washout map", "parametric_map"), ("Ktrans", "parametric_map"),
    ("Ax T2 FSE", "t2"), ("t2_tse_tra", "t2"), ("ax_t2_tse_fs", "t2"), ("STIR", "t2"), ("Ax STIR bilat", "t2"),
    ("DWI b800", "diffusion"), ("ADC", "diffusion"), ("ep2d_diff_tra", "diffusion"), ("Diffusion", "diffusion"),
    ("3 plane localizer", "localizer"), ("Scout", "localizer"), ("SURVEY", "localizer"),
    ("ASSET cal", "localizer"), ("Ax T1 non fat sat", "non_fat_sat"), ("ax t1 non fs", "non_fat_sat"),
    ("T1 w/o fat sat", "non_fat_sat"), ("ax t1 no fs", "non_fat_sat"), ("T1 NON-FAT-SAT PRE", "non_fat_sat"),
    ("ISPY2: VOLSER: uni-lateral cropped: PE2", "parametric_map"),
    ("ISPY2: VOLSER: uni-lateral cropped: SER", "parametric_map"),
]


def _first(description: str, image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "OTHER")) -> SimpleNamespace:
    ds = Dataset()
    ds.SeriesDescription = description
    return SimpleNamespace(ds=ds, image_type=image_type)


def _fired(description: str) -> str | None:
    s = _first(description)
    return next((r.name for r in series_filter_rules() if not r.requires_original and r.fires(s)), None)


def test_rules_load_with_unique_names() -> None:
    names = [r.name for r in series_filter_rules()]
    assert len(names) == len(set(names)) >= 8 and "derived" in names


@pytest.mark.parametrize("description", DCE_DESCRIPTIONS)
def test_real_dce_descriptions_are_not_filtered(description: str) -> None:
    assert _fired(description) is None


@pytest.mark.parametrize("description,rule", NON_DCE)
def test_non_dce_descriptions_are_filtered(description: str, rule: str) -> None:
    assert _fired(description) == rule


# ------------------------------------------------------------------ synthetic studies with extra series
def small(tmp: Path, name: str = "CASE_F", **kw) -> StudyTruth:
    base = dict(patient_id=name, vendor="GE", matrix=(20, 24), n_slices=6, n_phases=3, extra_non_dicom=False)
    return write_study(tmp / name, StudySpec(**{**base, **kw}), seed=7)


def add_series(truth: StudyTruth, description: str, image_type: list[str], offset: int, n: int | None = None) -> str:
    """A copy of phase 0's geometry as a new series (other pixel values, acquired 5 s after phase 0)."""
    uid, _ = synth_add_series(truth, description, tuple(image_type), seconds=5, value=50000 + 100 * offset,
                              series_number=900 + offset, n_images=n)
    return uid


def with_extras(tmp: Path, **kw) -> tuple[StudyTruth, dict[str, str]]:
    truth = small(tmp, **kw)
    extras = {
        add_series(truth, "SER", ["DERIVED", "SECONDARY", "OTHER"], 1): "parametric_map",
        add_series(truth, "SUB", ["DERIVED", "PRIMARY", "SUBTRACT"], 2): "subtraction",
        add_series(truth, "Ax T1 non fat sat", ["ORIGINAL", "PRIMARY", "OTHER"], 3): "non_fat_sat",
        add_series(truth, "Ax Vibrant MultiPhase reformat", ["DERIVED", "SECONDARY", "REFORMATTED"], 4): "derived",
    }
    return truth, extras


def assert_nifti_equal_truth(out: Path, truth: StudyTruth) -> None:
    """The written phase files are exactly the DCE phases (same voxel at the same world position)."""
    layout = Layout.from_definition(out)
    pid = truth.spec.patient_id
    assert len(layout.images(pid)) == truth.spec.n_phases
    for p in range(truth.spec.n_phases):
        img = nib.load(layout.image(pid, p))
        data = np.asarray(img.dataobj)
        idx = np.indices(data.shape).reshape(3, -1)
        lps = LPS_TO_RAS @ img.affine
        world = lps[:3, :3] @ idx + lps[:3, 3:4]
        src = np.linalg.solve(truth.grid_affine[:3, :3], world - truth.grid_affine[:3, 3:4])
        assert np.max(np.abs(src - np.rint(src))) < 1e-3
        s = np.rint(src).astype(int)
        np.testing.assert_array_equal(data[tuple(idx)], truth.values[p][s[0], s[1], s[2]])


@pytest.mark.parametrize("layout", ["per_phase", "single_series"])
def test_scan_ignores_same_geometry_non_dce_series(tmp_path: Path, layout: str) -> None:
    truth, extras = with_extras(tmp_path, layout=layout)
    inv = scan(truth.root)
    assert inv.filtered == extras
    assert [ph.series_uid for ph in inv.phases] == (truth.series_uids if layout == "per_phase"
                                                    else truth.series_uids * 3)
    unfiltered = scan(truth.root, series_filter=False)
    assert not unfiltered.filtered
    if layout == "per_phase":  # one series per phase: every series of the geometry is a phase
        assert len(unfiltered.phases) == 3 + len(extras)
    else:  # the dynamic is held in one series: the others are not phases of it, filter or not
        assert [ph.series_uid for ph in unfiltered.phases] == truth.series_uids * 3
        assert {u: unfiltered.decisions[u].rule for u in extras} == dict.fromkeys(extras, "single_series_dynamic")


def test_convert_cli_filters_and_all_series_takes_them(cli, tmp_path: Path) -> None:
    truth, extras = with_extras(tmp_path)
    res = cli("convert", truth.root, tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    assert "CASE_F: converted, 3 phases" in res.stdout
    assert_nifti_equal_truth(tmp_path / "out", truth)
    logged = [line for line in res.stderr.splitlines() if "ignored by series_filter rule" in line]  # the CLI log
    assert sorted(line.rsplit(" ", 1)[1] for line in logged) == sorted(extras.values())
    assert all(any(uid in line for line in logged) for uid in extras)

    res = cli("convert", truth.root, tmp_path / "all", "--all-series")
    assert res.exit_code == 0, res.stderr
    assert "CASE_F: converted, 7 phases" in res.stdout
    img = nib.load(Layout.from_definition(tmp_path / "all").image("CASE_F", 1))  # an extra series, 5 s after pre
    assert np.asarray(img.dataobj).min() >= 50000


def test_dry_run_lists_ignored_series_and_rule(cli, tmp_path: Path) -> None:
    truth, extras = with_extras(tmp_path)
    res = cli("convert", truth.root, tmp_path / "out", "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert "CASE_F: 3 phases" in res.stdout and "4 series ignored by the series filter" in res.stdout
    for uid, rule in extras.items():
        line = next(line for line in res.stdout.splitlines() if f"series {uid} " in line)
        assert line.endswith(f"(ignored: series_filter rule {rule})"), line
    res = cli("convert", truth.root, tmp_path / "out", "--dry-run", "--all-series")
    assert "CASE_F: 7 phases" in res.stdout and "0 series ignored by the series filter" in res.stdout
    assert "--all-series" in cli("convert", "--help").stdout


def test_derived_dce_without_original_still_converts(tmp_path: Path) -> None:
    """A scanner that marks its DCE DERIVED: the derived rule needs an ORIGINAL series of that geometry."""
    truth = small(tmp_path)
    for f in truth.files:
        ds = pydicom.dcmread(f)
        ds.ImageType = ["DERIVED", "PRIMARY", "OTHER"]
        ds.save_as(f, enforce_file_format=True)
    sub = add_series(truth, "SUB", ["DERIVED", "SECONDARY", "SUBTRACT"], 1)
    inv = scan(truth.root)
    assert inv.filtered == {sub: "subtraction"} and len(inv.phases) == 3


def test_filtered_series_never_errors(tmp_path: Path) -> None:
    """A one-image MIP of the DCE geometry would fail the slice-count check as a phase; filtered, it is ignored."""
    truth = small(tmp_path)
    mip = add_series(truth, "MIP", ["DERIVED", "SECONDARY", "MIP"], 1, n=1)
    inv = scan(truth.root)
    assert inv.filtered == {mip: "mip"} and len(inv.phases) == 3
    from etl.errors import DicomError

    with pytest.raises(DicomError, match="phase has 1 slices"):
        scan(truth.root, series_filter=False)


def test_filter_leaving_nothing_falls_back_with_warning(tmp_path: Path, caplog) -> None:
    truth = small(tmp_path, layout="single_series")
    for f in truth.files:
        ds = pydicom.dcmread(f)
        ds.SeriesDescription = "Ax SUB dyn"  # a study whose only series a rule would ignore
        ds.save_as(f, enforce_file_format=True)
    with caplog.at_level(logging.WARNING, logger="etl.transform.dicom"):
        inv = scan(truth.root)
    assert len(inv.phases) == 3 and not inv.filtered and inv.filter_fallback == ["subtraction"]
    assert any("subtraction" in r.getMessage() and "unfiltered" in r.getMessage() for r in caplog.records)
    assert any("series filter not applied" in line and "subtraction" in line for line in inv.describe())


def test_requires_original_is_per_geometry(tmp_path: Path) -> None:
    """filter_series judged directly: DERIVED beside an ORIGINAL of another geometry is kept."""
    truth = small(tmp_path)
    inv = scan(truth.root)
    s0 = inv.phases[0].slices[0]
    from dataclasses import replace

    derived = replace(s0, series_uid="9.9", image_type=("DERIVED", "SECONDARY"), header=s0.ds)
    other = replace(s0, series_uid="9.8", rows=s0.rows + 2, header=s0.ds)
    rules = series_filter_rules()
    assert filter_series({"9.9": [derived], "9.8": [other]}, rules) == {}
    assert filter_series({"9.9": [derived], "1": [s0]}, rules) == {"9.9": "derived"}
