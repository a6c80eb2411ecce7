"""DICOM layouts the fixtures do not write by default, made with pydicom from a synthetic study: each either
converts to the synthetic truth or fails with a named DicomError."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from etl.errors import DicomError
from etl.layout import Layout
from etl.synth.dicom import StudySpec, StudyTruth, write_enhanced, write_study
from etl.transform.dicom import read_phase, scan

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def small(tmp: Path, name: str = "case", seed: int = 1, **kw) -> StudyTruth:
    base = dict(patient_id=name, matrix=(20, 24), n_slices=6, n_phases=3, extra_non_dicom=False)
    return write_study(tmp / name, StudySpec(**{**base, **kw}), seed=seed)


def edit(files, fn) -> None:
    for f in files:
        ds = pydicom.dcmread(f)
        fn(ds)
        ds.save_as(f, enforce_file_format=False)


def assert_phases_equal_truth(inv, truth: StudyTruth) -> None:
    """Each phase (grid and values) is the truth's: same voxel at the same LPS position."""
    assert len(inv.phases) == truth.spec.n_phases
    for p, ph in enumerate(inv.phases):
        data = read_phase(ph).transpose(2, 1, 0)  # (c, r, k)
        idx = np.indices(data.shape).reshape(3, -1)
        world = ph.affine[:3, :3] @ idx + ph.affine[:3, 3:4]
        src = np.linalg.solve(truth.grid_affine[:3, :3], world - truth.grid_affine[:3, 3:4])
        assert np.max(np.abs(src - np.rint(src))) < 1e-3
        s = np.rint(src).astype(int)
        np.testing.assert_array_equal(data[tuple(idx)], truth.values[p][s[0], s[1], s[2]])


def test_localizers_are_ignored(tmp_path: Path) -> None:
    """A 3-plane localizer series, and a scout inside the dynamic series folder, do not stop the case."""
    truth = small(tmp_path)
    src = pydicom.dcmread(truth.files[0])
    loc_uid = generate_uid()
    for j, iop in enumerate([[1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, -1], [1, 0, 0, 0, 0, -1]]):
        ds = copy.deepcopy(src)
        ds.SeriesInstanceUID = loc_uid if j else src.SeriesInstanceUID  # the first one inside the DCE series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImageOrientationPatient = iop
        ds.save_as(truth.files[0].parent / f"loc{j}.dcm")
    inv = scan(truth.root)
    assert inv.n_localizers == 3
    assert_phases_equal_truth(inv, truth)


def test_series_without_geometry_is_ignored_but_partial_geometry_is_an_error(tmp_path: Path) -> None:
    truth = small(tmp_path)
    ds = pydicom.dcmread(truth.files[0])
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    del ds.ImagePositionPatient, ds.ImageOrientationPatient
    ds.save_as(truth.root / "screen_capture.dcm")
    inv = scan(truth.root)
    assert inv.n_no_geometry == 1
    assert_phases_equal_truth(inv, truth)
    edit(truth.files[4:5], lambda d: delattr(d, "ImagePositionPatient"))
    with pytest.raises(DicomError, match="missing or malformed ImagePositionPatient") as info:
        scan(truth.root)
    assert truth.files[4].name in info.value.where and truth.series_uids[0] in info.value.where


def _strip_temporal(ds, keep: str) -> None:
    for tag in ("TemporalPositionIdentifier", "NumberOfTemporalPositions"):
        if tag in ds and keep != tag:
            delattr(ds, tag)
    if keep != "TriggerTime":
        ds.TriggerTime = "0"


def _per_slice_times(ds) -> None:
    """2D-like timing: each slice of a phase has its own AcquisitionTime (2 s apart); no other temporal tag."""
    _strip_temporal(ds, "AcquisitionTime")
    t = pydicom.valuerep.TM(ds.AcquisitionTime)
    secs = t.hour * 3600 + t.minute * 60 + t.second + (int(ds.InstanceNumber) - 1) // 3 * 2
    ds.AcquisitionTime = ds.ContentTime = f"{secs // 3600:02d}{secs % 3600 // 60:02d}{secs % 60:02d}"


def test_phases_only_by_acquisition_time_varying_per_slice(tmp_path: Path) -> None:
    """Phases are then the ranks of each position's acquisitions (disjoint time windows)."""
    truth = small(tmp_path, layout="single_series", vendor="GE")
    edit(truth.files, _per_slice_times)
    assert_phases_equal_truth(scan(truth.root), truth)


def test_acquisition_number_per_slice_is_not_a_phase(tmp_path: Path) -> None:
    """AcquisitionNumber counting slices (not phases) must not split the series into one phase per slice."""
    truth = small(tmp_path, layout="single_series", vendor="Philips")  # phases by TriggerTime

    def fn(ds) -> None:
        _strip_temporal(ds, "TriggerTime")
        ds.AcquisitionNumber = int(ds.InstanceNumber)

    edit(truth.files, fn)
    assert_phases_equal_truth(scan(truth.root), truth)


@pytest.mark.parametrize("timing,message", [
    ("per_phase", "missing slice: gap of 8.0000 mm"),  # phases split by time, then the gap shows
    ("per_slice", "has 2 images where other positions have 3"),  # no split possible: the short position
])
def test_missing_slice_in_single_series_is_named(tmp_path: Path, timing: str, message: str) -> None:
    truth = small(tmp_path, layout="single_series", vendor="GE")
    edit(truth.files, _per_slice_times if timing == "per_slice" else lambda ds: _strip_temporal(ds, "AcquisitionTime"))
    truth.files[8].unlink()
    with pytest.raises(DicomError, match=message) as info:
        scan(truth.root)
    assert truth.series_uids[0] in info.value.where and "file" in info.value.where


def test_duplicate_files_are_ignored(tmp_path: Path) -> None:
    truth = small(tmp_path, layout="single_series", vendor="SIEMENS")
    for f in truth.files[:4]:
        shutil.copy(f, f.parent / f"{f.stem} (copy)")
    inv = scan(truth.root)
    assert inv.n_duplicates == 4
    assert_phases_equal_truth(inv, truth)


def test_signed_pixels_with_12_stored_bits_are_sign_extended(tmp_path: Path) -> None:
    import SimpleITK as sitk

    truth = small(tmp_path, matrix=(32, 32))
    stored = {}

    def fn(ds) -> None:
        a = ds.pixel_array.astype(np.int32) % 2000 - 1000
        stored[ds.SOPInstanceUID] = a
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 12, 11
        ds.PixelData = (a.astype("<i2").view("<u2") & 0x0FFF).astype("<u2").tobytes()  # upper 4 bits zero

    edit(truth.files, fn)
    inv = scan(truth.root)
    got = read_phase(inv.phases[0])
    assert got.dtype == np.int16 and got.min() < 0
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(s.path) for s in inv.phases[0].slices])
    np.testing.assert_array_equal(got, sitk.GetArrayFromImage(reader.Execute()))


def test_monochrome1_keeps_stored_values(tmp_path: Path) -> None:
    """MONOCHROME1 is a display convention: values stay as stored (as dcm2niix and dicom2nifti do)."""
    truth = small(tmp_path)
    edit(truth.files, lambda ds: setattr(ds, "PhotometricInterpretation", "MONOCHROME1"))
    assert_phases_equal_truth(scan(truth.root), truth)


def test_reversed_order_and_negative_spacing(tmp_path: Path) -> None:
    truth = small(tmp_path, oblique_deg=3.0)

    def fn(ds) -> None:
        ds.InstanceNumber = 100 - int(ds.InstanceNumber)
        ds.SpacingBetweenSlices = "-" + str(ds.SpacingBetweenSlices)

    edit(truth.files, fn)
    assert_phases_equal_truth(scan(truth.root), truth)


@pytest.mark.parametrize("vendor,view", [("Philips", "axial"), ("GE", "sagittal")])
def test_enhanced_mr_multiframe(tmp_path: Path, vendor: str, view: str) -> None:
    """All phases in one Enhanced MR file, frames shuffled, geometry/rescale/time in functional groups."""
    from etl.transform.headers import extract

    truth = small(tmp_path / "src", vendor=vendor, view=view, oblique_deg=4.0 if view == "sagittal" else 0.0)
    path = write_enhanced(truth, tmp_path / "case" / "enhanced.dcm", shuffle_seed=3)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert "ImagePositionPatient" not in ds and ds.NumberOfFrames == 18
    inv = scan(path.parent)
    assert_phases_equal_truth(inv, truth)
    values = extract(inv)
    assert values["acquisition_times"] == truth.acquisition_times and values["num_slices"] == 6


def test_preamble_less_files_convert(cli, tmp_path: Path) -> None:
    truth = small(tmp_path, name="OLD_1")
    for f in truth.files:
        ds = pydicom.dcmread(f)
        ds.preamble = None
        ds.save_as(f, enforce_file_format=False)
    assert truth.files[0].read_bytes()[:2] == b"\x02\x00"
    res = cli("convert", truth.root, tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    assert "OLD_1: converted, 3 phases" in res.stdout


def test_patient_folder_with_two_studies_converts_the_first(cli, tmp_path: Path) -> None:
    """Two visits of one patient (series folders not named by UID): one case, the earlier study's phases."""
    first = small(tmp_path, name="PAT_2", seed=3)
    later = write_study(tmp_path / "PAT_2" / "visit 2", StudySpec(patient_id="PAT_2", matrix=(20, 24), n_slices=6,
                                                                  n_phases=4, extra_non_dicom=False), seed=4)
    edit(later.files, lambda ds: (setattr(ds, "StudyDate", "20991231"), setattr(ds, "AcquisitionDate", "20991231")))
    res = cli("convert", tmp_path / "PAT_2", tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    assert "PAT_2: converted, 3 phases" in res.stdout
    inv = scan(tmp_path / "PAT_2")
    assert len(inv.ignored_studies) == 1 and {ph.series_uid for ph in inv.phases} == set(first.series_uids)
    img = nib.load(Layout.from_definition(tmp_path / "out").image("PAT_2", 1))
    np.testing.assert_allclose(img.affine[:3, :3], (LPS_TO_RAS @ first.grid_affine)[:3, :3] @ np.diag([1, 1, 1]),
                               atol=1e-4)


def test_dicomdir_at_the_root_of_a_folder_of_cases(cli, tmp_path: Path) -> None:
    """A DICOMDIR beside patient folders does not turn the folder of cases into one case."""
    from pydicom.fileset import FileSet

    cases = tmp_path / "cases"
    a = small(cases, name="PAT_A", seed=5)
    small(cases, name="PAT_B", seed=6)
    fs = FileSet()
    fs.add(a.files[0])
    fs.write(tmp_path / "media")
    shutil.copy(tmp_path / "media" / "DICOMDIR", cases / "DICOMDIR")
    res = cli("convert", cases, tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    assert "2 converted, 0 already done, 0 failed" in res.stdout
