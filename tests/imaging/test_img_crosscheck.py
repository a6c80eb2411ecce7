"""Converted voxels and affines against the synthetic truth, SimpleITK and dicom2nifti (same inputs)."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from etl.layout import Layout
from etl.synth.dicom import LAYOUTS, VENDORS, VIEWS
from etl.transform.nifti import profile_codes

COMBOS = list(itertools.product(VENDORS, LAYOUTS, VIEWS))
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
PROFILES = ("mama-mia-v1", "challenge")
EXPECTED = {("mama-mia-v1", "axial"): "LPS", ("mama-mia-v1", "sagittal"): "RAS",
            ("challenge", "axial"): "LAS", ("challenge", "sagittal"): "PSR"}


def _ids(combo: tuple[str, str, str]) -> str:
    return "-".join(combo)


def world_mapping_equal(data: np.ndarray, affine_ras: np.ndarray, ref: np.ndarray, ref_affine_ras: np.ndarray) -> None:
    """Every voxel of ``data`` sits at a voxel centre of ``ref`` (same world position) with the same value."""
    assert data.size == ref.size
    idx = np.indices(data.shape).reshape(3, -1)
    world = affine_ras[:3, :3] @ idx + affine_ras[:3, 3:4]
    ref_idx = np.linalg.solve(ref_affine_ras[:3, :3], world - ref_affine_ras[:3, 3:4])
    rounded = np.rint(ref_idx)
    assert np.max(np.abs(ref_idx - rounded)) < 1e-3, "voxel centres moved"
    r = rounded.astype(int)
    for axis in range(3):
        assert r[axis].min() == 0 and r[axis].max() == ref.shape[axis] - 1
    np.testing.assert_array_equal(data.reshape(-1, order="C")[np.ravel_multi_index(idx, data.shape)],
                                  ref[r[0], r[1], r[2]])


def to_codes(data: np.ndarray, affine_ras: np.ndarray, codes: str) -> tuple[np.ndarray, np.ndarray]:
    """Another reader's volume brought to our orientation with nibabel's own reorientation."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

    xform = ornt_transform(io_orientation(affine_ras), axcodes2ornt(tuple(codes)))
    return apply_orientation(data, xform), affine_ras @ inv_ornt_aff(xform, data.shape)


def ours(converted: dict[str, Path], profile: str, pid: str, phase: int) -> nib.Nifti1Image:
    return nib.load(Layout.from_definition(converted[profile]).image(pid, phase))


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("combo", COMBOS, ids=_ids)
def test_against_truth(studies, converted, combo, profile):
    truth = studies[combo]
    pid = truth.spec.patient_id
    for p in range(truth.spec.n_phases):
        img = ours(converted, profile, pid, p)
        codes = "".join(nib.aff2axcodes(img.affine))
        assert codes == EXPECTED[(profile, truth.spec.view)] == profile_codes(profile, truth.spec.view)
        data = np.asarray(img.dataobj)
        assert data.dtype == np.uint16  # integral rescale (Philips slope 2) keeps an integer type
        assert img.header["qform_code"] == 1 and img.header["sform_code"] == 1
        np.testing.assert_allclose(img.header.get_qform(), img.affine, atol=1e-4)
        world_mapping_equal(data, img.affine, truth.values[p], LPS_TO_RAS @ truth.grid_affine)
    record = json.loads(Layout.from_definition(converted[profile]).imaging_json(pid).read_text())
    assert record["num_phases"] == truth.spec.n_phases
    assert record["acquisition_times"] == truth.acquisition_times


def _phase_files(truth, p: int) -> list[str]:
    n = truth.spec.n_slices
    return [str(f) for f in truth.files[p * n:(p + 1) * n]]  # written phase-major, slice order along the normal


def _sitk_volume(files: list[str]):
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    return reader.Execute()


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("combo", COMBOS, ids=_ids)
def test_against_simpleitk(studies, converted, combo, profile):
    import SimpleITK as sitk

    truth = studies[combo]
    p = 1
    img = ours(converted, profile, truth.spec.patient_id, p)
    codes = "".join(nib.aff2axcodes(img.affine))
    oriented = sitk.DICOMOrient(_sitk_volume(_phase_files(truth, p)), codes)
    direction = np.array(oriented.GetDirection()).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = direction * np.array(oriented.GetSpacing())
    aff[:3, 3] = oriented.GetOrigin()
    np.testing.assert_allclose(LPS_TO_RAS @ aff, img.affine, atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(oriented).T.astype(np.float64),
                                  np.asarray(img.dataobj).astype(np.float64))


@pytest.mark.parametrize("combo", COMBOS, ids=_ids)
def test_against_dicom2nifti(studies, converted, combo, tmp_path):
    """dicom2nifti cannot split a multi-phase series without vendor private tags, so it gets one phase's files."""
    import dicom2nifti

    logging.getLogger("dicom2nifti").setLevel(logging.ERROR)
    truth = studies[combo]
    p = 2
    src = tmp_path / "phase"
    src.mkdir()
    for f in _phase_files(truth, p):
        (src / Path(f).name).symlink_to(f)
    out = tmp_path / "d2n.nii.gz"
    dicom2nifti.dicom_series_to_nifti(str(src), str(out), reorient_nifti=False)
    theirs = nib.load(out)
    for profile in PROFILES:
        img = ours(converted, profile, truth.spec.patient_id, p)
        data, aff = to_codes(np.asarray(theirs.dataobj), theirs.affine, "".join(nib.aff2axcodes(img.affine)))
        np.testing.assert_allclose(aff, img.affine, atol=1e-4)
        np.testing.assert_array_equal(data.astype(np.float64), np.asarray(img.dataobj).astype(np.float64))


def test_ground_truth_mask_on_converted_grid(studies, converted, tmp_path):
    """The synth's mask NIfTI lands on the converted phase grid, so it can serve as the expert segmentation."""
    from etl.synth.corpus import write_mask

    truth = studies[("Philips", "single_series", "sagittal")]
    for profile in PROFILES:
        mask = nib.load(write_mask(tmp_path / f"{profile}.nii.gz", truth, profile))
        phase = ours(converted, profile, truth.spec.patient_id, 1)
        np.testing.assert_allclose(mask.affine, phase.affine, atol=1e-6)
        m = np.asarray(mask.dataobj)
        assert m.dtype == np.uint8 and m.sum() == truth.mask.sum() > 0
        # the lesion enhances: phase 1 over phase 0 inside the mask
        pre = np.asarray(ours(converted, profile, truth.spec.patient_id, 0).dataobj).astype(float)
        post = np.asarray(phase.dataobj).astype(float)
        pe = (post - pre) / np.maximum(pre, 1)
        assert np.median(pe[m == 1]) > 0.8 and np.median(pe[(m == 0) & (pre > 100)]) < 0.3


def test_truth_mask_writer_is_independent_and_agrees_with_the_product_writer(studies, tmp_path):
    """The synth writes its truth masks with nibabel alone; the product's writer gives the same voxels and
    affine for every view and profile, so switching the truth writer changed no expectation."""
    import inspect

    from etl.synth import corpus
    from etl.transform.nifti import write_phase

    assert "etl.transform" not in inspect.getsource(corpus.write_mask)
    for combo, truth in studies.items():
        for profile in PROFILES:
            ours_path = corpus.write_mask(tmp_path / f"{_ids(combo)}-{profile}-truth.nii.gz", truth, profile)
            product = tmp_path / f"{_ids(combo)}-{profile}-product.nii.gz"
            write_phase(product, np.ascontiguousarray(truth.mask.transpose(2, 1, 0)), truth.grid_affine, profile)
            a, b = nib.load(ours_path), nib.load(product)
            assert "".join(nib.aff2axcodes(a.affine)) == EXPECTED[(profile, truth.spec.view)], combo
            assert a.get_data_dtype() == b.get_data_dtype() == np.uint8
            np.testing.assert_allclose(a.affine, b.affine, atol=1e-6)
            np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
            assert int(a.header["sform_code"]) == int(a.header["qform_code"]) == 1
