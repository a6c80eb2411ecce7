"""Phantom contract, NIfTI writer (gzip, orientation) and the Runner, without DICOM."""

from __future__ import annotations

import gzip
import zlib

import nibabel as nib
import numpy as np
import pytest

from etl.errors import ConfigError, DicomError, ValidationFailed
from etl.runner import LocalRunner, make_runner
from etl.synth.phantom import Phantom, make_phantom
from etl.transform import gzipstream, nifti


def test_phantom_contract() -> None:
    ph = make_phantom(3)
    assert isinstance(ph, Phantom)
    assert ph.phases.dtype == np.float32 and ph.phases.shape == (4, 64, 64, 24)
    assert ph.mask.dtype == np.uint8 and ph.mask.shape == (64, 64, 24) and set(np.unique(ph.mask)) == {0, 1}
    assert ph.spacing == (2.0, 2.0, 4.0)
    assert ph.acquisition_times[0] == 0 and len(ph.acquisition_times) == 4
    assert all(b > a for a, b in zip(ph.acquisition_times, ph.acquisition_times[1:]))
    again = make_phantom(3)
    assert np.array_equal(ph.phases, again.phases) and np.array_equal(ph.mask, again.mask)
    assert not np.array_equal(ph.phases, make_phantom(4).phases)


@pytest.mark.parametrize("kwargs", [{}, {"bilateral": False}, {"fat_suppressed": False}, {"n_phases": 6}])
def test_phantom_lesion_found_by_percent_enhancement(kwargs) -> None:
    ph = make_phantom(11, **kwargs)
    pre, post = ph.phases[0].astype(float), ph.phases[1].astype(float)
    pe = (post - pre) / np.maximum(pre, 1.0)
    found = (pe > 0.7) & (pre > 50)
    lesion = ph.mask.astype(bool)
    assert (found & lesion).sum() / lesion.sum() > 0.95  # strongly enhancing on phase 1
    assert (found & ~lesion).sum() < 0.02 * lesion.sum()  # background parenchyma enhances weakly
    if len(ph.acquisition_times) > 2:  # wash-out after the first post-contrast phase
        assert ph.phases[-1][lesion].mean() < ph.phases[1][lesion].mean()


def test_phantom_options() -> None:
    fs, nofs = make_phantom(5), make_phantom(5, fat_suppressed=False)
    assert np.median(nofs.phases[0][nofs.phases[0] > 50]) > np.median(fs.phases[0][fs.phases[0] > 50])
    assert make_phantom(5, lesion=False).mask.sum() == 0
    big = make_phantom(1, shape=(200, 180, 30), spacing=(0.8, 0.8, 2.0), n_phases=1)
    assert big.phases.shape == (1, 200, 180, 30) and big.mask.sum() > 0


def test_gzip_is_standard_and_independent_of_how_it_was_fed() -> None:
    """Whole buffers, borrowed chunks or small pieces: the same stream gives the same bytes (chunk
    boundaries are offsets of the stream; 3 M uint16 = 1.4 chunks of 4 MiB, so a boundary is crossed)."""
    import io

    rng = np.random.default_rng(0)
    raw = (rng.normal(300, 40, 3_000_000).astype(np.uint16)).tobytes()
    one = gzipstream.gzip_bytes([b"head", raw])
    pieces = io.BytesIO()
    with gzipstream.ChunkedGzipWriter(pieces) as gz:
        gz.write(b"he")
        gz.write(b"ad" + raw[:777])
        for start in range(777, len(raw), 100_003):
            gz.write(raw[start:start + 100_003])
    assert one == pieces.getvalue() == gzipstream.gzip_bytes([b"head" + raw])
    assert gzip.decompress(one) == b"head" + raw
    assert one[4:8] == b"\x00\x00\x00\x00"  # mtime 0
    assert zlib.decompress(gzipstream.gzip_bytes([b""]), 31) == b""


def test_reorient_preserves_world_positions(tmp_path) -> None:
    """Permute/flip only: each voxel keeps its value and its world position; codes as requested."""
    rng = np.random.default_rng(1)
    data = rng.integers(0, 1000, (5, 6, 7)).astype(np.int16)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[0, 0, -1.5], [0.7, 0, 0], [0, -0.7, 0]])  # sagittal-like, LPS
    affine[:3, 3] = [10, -20, 30]
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    for codes in ("LPS", "RAS", "LAS", "PSR", "SPR"):
        out, new_aff = nifti.reorient(data, affine, codes)
        assert "".join(nib.aff2axcodes(new_aff)) == codes
        idx = np.indices(out.shape).reshape(3, -1)
        world = new_aff[:3, :3] @ idx + new_aff[:3, 3:4]
        src = np.rint(np.linalg.solve(ras[:3, :3], world - ras[:3, 3:4])).astype(int)
        np.testing.assert_array_equal(out[tuple(idx)], data[tuple(src)])
        path = tmp_path / f"{codes}.nii.gz"
        nifti.write_nifti(path, data, affine, codes)
        img = nib.load(path)
        assert "".join(nib.aff2axcodes(img.affine)) == codes
        np.testing.assert_array_equal(np.asarray(img.dataobj), out)
        assert img.get_data_dtype() == np.int16


def test_profiles_and_views() -> None:
    assert nifti.profile_codes("mama-mia-v1", "axial") == "LPS"
    assert nifti.profile_codes("challenge", "sagittal") == "PSR"
    with pytest.raises(ConfigError):
        nifti.profile_codes("nope", "axial")
    with pytest.raises(DicomError, match="coronal"):
        nifti.profile_codes("mama-mia-v1", "coronal")
    coronal = np.eye(4)
    coronal[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]
    assert nifti.view_of(coronal) == "coronal" and nifti.view_of(np.eye(4)) == "axial"


def _work(x: int) -> int:
    if x == 3:
        raise ValidationFailed("three is not allowed", f"item {x}")
    if x == 4:
        raise ZeroDivisionError("bug")
    return x * x


@pytest.mark.parametrize("jobs", [1, 2])
def test_local_runner_reports_each_failure(jobs: int) -> None:
    outcomes = sorted(LocalRunner(jobs).map(_work, [1, 2, 3, 4, 5]), key=lambda o: o.index)
    assert [o.value for o in outcomes if o.ok] == [1, 4, 25]
    bad = {o.index: o for o in outcomes if not o.ok}
    assert bad[2].error_kind == "ValidationFailed" and bad[2].message == "three is not allowed (item 3)"
    assert bad[2].traceback is None
    assert bad[3].error_kind == "ZeroDivisionError" and "Traceback" in (bad[3].traceback or "")
    assert make_runner(2).name == "local" and make_runner(1, "tcp://127.0.0.1:1").name == "dask"
