"""Inventory and reading: real pydicom test files decode; broken inputs give the named DicomError."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from etl.errors import DicomError
from etl.synth.dicom import StudySpec, write_study
from etl.transform.dicom import read_phase, scan

SMALL = StudySpec(matrix=(16, 20), n_slices=6, n_phases=3, extra_non_dicom=True)
# pydicom's bundled real MR slices (one 64x64 image in several encodings).
VARIANTS = ("MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm",
            "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_padded.dcm", "MR_small_expb.dcm")


def _local(name: str) -> Path:
    path = get_testdata_file(name, download=False) if "download" in get_testdata_file.__code__.co_varnames else \
        get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not bundled with this pydicom")
    return Path(path)


@pytest.mark.parametrize("name", VARIANTS)
def test_pydicom_real_files_decode(name: str, tmp_path: Path) -> None:
    """Every encoding either decodes to the reference pixels or fails with a DicomError naming the file."""
    reference = pydicom.dcmread(_local("MR_small.dcm")).pixel_array.astype(np.int32)
    src = _local(name)
    shutil.copy(src, tmp_path / name)
    inv = scan(tmp_path)
    assert len(inv.phases) == 1 and inv.phases[0].shape == (64, 64, 1)
    try:
        values = read_phase(inv.phases[0])
    except DicomError as exc:  # a codec the installed pixel handlers lack
        assert name in (exc.where or "") and "cannot decode" in exc.what
        pytest.skip(f"no handler installed for {name}: {exc.what}")
    np.testing.assert_array_equal(values[0].astype(np.int32), reference)


def test_real_truncated_file(tmp_path: Path) -> None:
    shutil.copy(_local("MR_truncated.dcm"), tmp_path / "MR_truncated.dcm")
    with pytest.raises(DicomError, match="truncated") as info:
        read_phase(scan(tmp_path).phases[0])
    assert "MR_truncated.dcm" in info.value.where


@pytest.fixture
def study(tmp_path: Path):
    return write_study(tmp_path / "case", SMALL, seed=5)


def test_inventory_counts_and_orders(study) -> None:
    inv = scan(study.root)
    assert inv.n_non_dicom == 1 and inv.n_files == len(study.files) + 1
    assert [ph.series_uid for ph in inv.phases] == study.series_uids
    assert [round(ph.time - inv.phases[0].time) for ph in inv.phases] == study.acquisition_times
    assert any("phase 2" in line for line in inv.describe())


def test_truncated_synthetic_file(study) -> None:
    victim = study.files[7]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 100])
    with pytest.raises(DicomError, match="truncated") as info:
        scan(study.root)
    assert victim.name in info.value.where


def test_missing_slice(study) -> None:
    victim = study.files[SMALL.n_slices + 2]  # phase 1, a middle slice
    victim.unlink()
    with pytest.raises(DicomError, match="missing slice") as info:
        scan(study.root)
    assert study.series_uids[1] in info.value.where and "file" in info.value.where


def test_missing_end_slice(study) -> None:
    study.files[SMALL.n_slices * 2 - 1].unlink()  # last slice of phase 1: only the slice count shows it
    with pytest.raises(DicomError, match="slices where the other phases have"):
        scan(study.root)


def test_mixed_orientation_series(study) -> None:
    victim = study.files[3]
    ds = pydicom.dcmread(victim)
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(victim)
    with pytest.raises(DicomError, match="mixed slice orientations") as info:
        scan(study.root)
    assert victim.name in info.value.where and study.series_uids[0] in info.value.where


def test_duplicate_positions_without_temporal_tag(tmp_path: Path) -> None:
    """A single series whose phases nothing tells apart cannot be split: named error, no guess."""
    study = write_study(tmp_path / "c", StudySpec(matrix=(8, 8), n_slices=4, n_phases=2, layout="single_series",
                                                  vendor="GE"), seed=2)
    for f in study.files:
        ds = pydicom.dcmread(f)
        for tag in ("TemporalPositionIdentifier", "AcquisitionTime", "ContentTime", "AcquisitionDate"):
            if tag in ds:
                delattr(ds, tag)
        ds.AcquisitionNumber = 1
        ds.SeriesTime = "101010"
        ds.save_as(f)
    with pytest.raises(DicomError, match="duplicate slice position"):
        scan(study.root)


def test_no_dicom(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DicomError, match="no DICOM images"):
        scan(tmp_path)


def test_float_rescale_gives_float32(tmp_path: Path) -> None:
    study = write_study(tmp_path / "c", StudySpec(matrix=(8, 8), n_slices=4, n_phases=2, rescale=(0.5, -3.0)), seed=3)
    inv = scan(study.root)
    values = read_phase(inv.phases[1])
    assert values.dtype == np.float32
    np.testing.assert_allclose(values.transpose(2, 1, 0), study.values[1], rtol=0, atol=1e-4)


def test_integer_rescale_keeps_integers(tmp_path: Path) -> None:
    """Integral slope/intercept: values exact in the smallest integer type that holds them."""
    study = write_study(tmp_path / "c", StudySpec(matrix=(8, 8), n_slices=4, n_phases=2, rescale=(3.0, -1024.0)),
                        seed=3)
    values = read_phase(scan(study.root).phases[0])
    assert values.dtype.kind in "iu" and values.dtype.itemsize <= 4
    np.testing.assert_array_equal(values.transpose(2, 1, 0), study.values[0])


def test_phase_geometry_names_the_first_failing_slice_and_check(study) -> None:
    """The three per-slice checks run over the whole phase at once; the report is still the first slice
    (in the phase's order) that fails, with the first check it fails, as a slice-by-slice loop gives."""
    import dataclasses

    from etl.transform.dicom.geometry import phase_geometry

    slices = list(scan(study.root).phases[0].slices)
    uid = slices[0].series_uid
    assert phase_geometry(uid, slices)[0] == slices  # untouched phase passes, sorted along the normal

    def broken(i: int, **change: object) -> list:
        out = list(slices)
        out[i] = dataclasses.replace(out[i], **change)
        return out

    wider = broken(4, pixel_spacing=(slices[4].pixel_spacing[0] * 1.01, slices[4].pixel_spacing[1]))
    with pytest.raises(DicomError, match="pixel spacing .* differs") as info:
        phase_geometry(uid, wider)
    assert slices[4].path.name in info.value.where
    close = broken(4, pixel_spacing=(slices[4].pixel_spacing[0] * (1 + 5e-5), slices[4].pixel_spacing[1]))
    assert len(phase_geometry(uid, close)[0]) == len(slices)  # inside np.allclose's rtol=1e-4: accepted
    # slice 2 fails on size, slice 4 on orientation and spacing: slice 2 is reported, for its size
    both = broken(2, rows=slices[2].rows + 1)
    both[4] = dataclasses.replace(both[4], iop=np.array([0, 1, 0, 0, 0, -1.0]), pixel_spacing=(9.0, 9.0))
    with pytest.raises(DicomError, match="image size") as info:
        phase_geometry(uid, both)
    assert slices[2].path.name in info.value.where
    turned = broken(3, iop=np.array([0, 1, 0, 0, 0, -1.0]), pixel_spacing=(9.0, 9.0))
    with pytest.raises(DicomError, match="mixed slice orientations in one phase") as info:
        phase_geometry(uid, turned)  # orientation is checked before spacing on the same slice
    assert slices[3].path.name in info.value.where
