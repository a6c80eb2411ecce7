"""The streamed phase writer (slice by slice into the gzip chunks) writes the bytes of the whole-array path.

Every one of the 48 orientation codes is tried on an axial and a sagittal acquisition, through each way a
slice can reach the writer (read straight into the chunk buffer, through the plane buffer, decoded by
pydicom), so a wrong flip, transpose or slice order in the fast path fails here by bytes."""

from __future__ import annotations

import dataclasses
import gzip
import itertools
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from etl.errors import DicomError
from etl.synth.dicom import StudySpec, write_study
from etl.transform import nifti, phase_writer
from etl.transform.dicom import read_phase, scan
from etl.transform.gzipstream import CHUNK

CODES = ["".join(p) for axes in itertools.permutations(("LR", "PA", "IS"))
         for p in itertools.product(*axes)]


@pytest.fixture(scope="module")
def phases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("stream")
    out = {}
    # 96x80 planes x 30 slices: a phase is > 2 chunks of 4 MiB only at production size, so CHUNK is made
    # small below to cross chunk boundaries inside slices.
    for name, view, rescale in (("axial", "axial", None), ("sagittal", "sagittal", None),
                                ("axial_rescaled", "axial", (2.0, -10.0)), ("axial_float", "axial", (1.7, 0.3))):
        spec = StudySpec(patient_id=f"S_{name}", view=view, n_phases=2, matrix=(96, 80), n_slices=30,
                         extra_non_dicom=False, rescale=rescale)
        write_study(root / name, spec, seed=3)
        out[name] = scan(root / name).phases[1]
    return out


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    import etl.transform.gzipstream as gs

    monkeypatch.setattr(gs, "CHUNK", 5000)  # odd size: chunk boundaries fall inside slices and rows


def _both(tmp: Path, phase: object, codes: str, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bytes, bool]:
    monkeypatch.setattr(nifti, "profile_codes", lambda profile, view: codes)
    monkeypatch.setattr(phase_writer, "profile_codes", lambda profile, view: codes)
    whole, streamed = tmp / "whole.nii.gz", tmp / "streamed.nii.gz"
    nifti.write_phase(whole, read_phase(phase), phase.affine, "p")  # type: ignore[attr-defined]
    _, affine = phase_writer.write_phase_from_dicom(streamed, phase, "p")  # type: ignore[arg-type]
    xform, _ = nifti.orientation_transform(phase.affine, (1, 1, 1), codes)  # type: ignore[attr-defined]
    assert np.allclose(nib.load(streamed).affine, affine)
    return whole.read_bytes(), streamed.read_bytes(), phase_writer.plane_plan(xform) is not None


@pytest.mark.parametrize("view", ["axial", "sagittal"])
def test_every_orientation_streams_the_same_bytes(phases, view, tmp_path, monkeypatch) -> None:
    streamed_count = 0
    for codes in CODES:
        whole, streamed, was_streamed = _both(tmp_path, phases[view], codes, monkeypatch)
        assert whole == streamed, codes
        assert "".join(nib.aff2axcodes(nib.load(tmp_path / "streamed.nii.gz").affine)) == codes
        streamed_count += was_streamed
    assert streamed_count == 16  # the codes whose third axis is the slice axis (2 x 2 x 2 flips x 2 orders)


def test_plane_buffer_and_pydicom_decode_paths_give_the_same_bytes(phases, tmp_path, monkeypatch) -> None:
    phase = phases["axial"]
    decoded = dataclasses.replace(phase, slices=[dataclasses.replace(s, pixel_offset=None) for s in phase.slices])
    for codes in ("LPS", "RAI", "PLS"):
        whole, streamed, _ = _both(tmp_path, decoded, codes, monkeypatch)
        assert whole == streamed, codes


def test_rescaled_phases_stream_in_two_passes_with_the_readers_values(phases, tmp_path, monkeypatch) -> None:
    from etl.transform.dicom.pixels import is_unscaled, read_stored

    integral = read_phase(phases["axial_rescaled"])  # rescaled real-world values, (k, r, c)
    assert integral.dtype.kind in "iu"
    assert np.array_equal(integral, read_stored(phases["axial_rescaled"]).astype(np.int32) * 2 - 10)
    real = read_phase(phases["axial_float"])
    assert real.dtype == np.float32  # a fractional slope cannot stay integer
    assert np.allclose(real, read_stored(phases["axial_float"]).astype(np.float64) * 1.7 + 0.3, rtol=1e-6)

    def no_whole_array(phase: object) -> None:
        raise AssertionError("the rescaled phase was read whole")

    for name, expected in (("axial_rescaled", integral), ("axial_float", real)):
        assert not is_unscaled(phases[name])
        for codes in ("LPS", "RAI", "PLS", "LAS"):
            with monkeypatch.context() as m:
                m.setattr(phase_writer, "read_phase", no_whole_array)
                whole, streamed, was_streamed = _both(tmp_path, phases[name], codes, m)
            assert was_streamed and whole == streamed, (name, codes)
        got = np.asanyarray(nib.load(tmp_path / "streamed.nii.gz").dataobj)
        assert got.dtype == expected.dtype  # orientation is the whole-array path's, compared by bytes above
        assert np.array_equal(np.sort(got, axis=None), np.sort(expected, axis=None))


def test_default_chunk_size_is_used_outside_tests() -> None:
    assert CHUNK == 1 << 22


def test_truncated_slice_is_refused_and_nothing_is_written(phases, tmp_path, monkeypatch) -> None:
    phase = phases["axial"]
    victim = tmp_path / "victim.dcm"
    victim.write_bytes(Path(phase.slices[5].path).read_bytes()[:-1000])
    slices = list(phase.slices)
    slices[5] = dataclasses.replace(slices[5], path=victim)
    broken = dataclasses.replace(phase, slices=slices)
    out = tmp_path / "out.nii.gz"
    with pytest.raises(DicomError, match="truncated file"):
        phase_writer.write_phase_from_dicom(out, broken, "mama-mia-v1")
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))


def test_streamed_file_is_a_valid_gzip_of_the_voxels(phases, tmp_path) -> None:
    phase = phases["axial"]
    out = tmp_path / "p.nii.gz"
    phase_writer.write_phase_from_dicom(out, phase, "mama-mia-v1")
    raw = gzip.decompress(out.read_bytes())
    img = nib.load(out)
    assert len(raw) == 352 + img.shape[0] * img.shape[1] * img.shape[2] * 2
    expected = read_phase(phase)  # (k, r, c); LPS keeps an axial acquisition's axes
    got = np.asanyarray(img.dataobj).transpose(2, 1, 0)
    assert np.array_equal(got, expected) or np.array_equal(got[::-1], expected)
