"""Nothing is dropped or skipped without a word (issue 19): a cache path with an unset variable is named in a
warning, and a NIfTI truncation check that cannot run is a finding naming the file, never a pass."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from etl.release.verify import _data_damage, verify_release
from tests.release.release_helpers import write_definition


def test_cache_with_an_unset_variable_is_left_out_with_a_warning_naming_it(tmp_path, monkeypatch, caplog):
    from etl.release.definition import load_definition

    monkeypatch.delenv("MAMAMIA_TEST_UNSET_CACHE", raising=False)
    definition = write_definition(tmp_path / "release.yaml", staged="staged", table="table.parquet")
    doc = yaml.safe_load(definition.read_text())
    doc["sources"]["caches"] = ["kept-cache", "${MAMAMIA_TEST_UNSET_CACHE}/tcia"]
    definition.write_text(yaml.safe_dump(doc, sort_keys=False))

    with caplog.at_level(logging.WARNING, logger="etl.release.definition"):
        defn = load_definition(definition)
    assert defn.caches == [(tmp_path / "kept-cache").resolve()]
    warned = [r.getMessage() for r in caplog.records if r.name == "etl.release.definition"]
    assert len(warned) == 1, warned
    assert "sources.caches[1]" in warned[0] and "MAMAMIA_TEST_UNSET_CACHE" in warned[0]
    assert "left out" in warned[0] and str(definition) in warned[0]

    # once the variable is set, the cache is kept and nothing is said
    caplog.clear()
    monkeypatch.setenv("MAMAMIA_TEST_UNSET_CACHE", str(tmp_path / "c"))
    with caplog.at_level(logging.WARNING, logger="etl.release.definition"):
        defn = load_definition(definition)
    assert defn.caches == [(tmp_path / "kept-cache").resolve(), (tmp_path / "c" / "tcia").resolve()]
    assert not [r for r in caplog.records if r.name == "etl.release.definition"]


class _Header:
    """A loaded header whose data size cannot be worked out (what a hand-edited or foreign header can do)."""

    sizeof_hdr = 348

    def __init__(self, error: Exception) -> None:
        self.error = error

    def get_data_offset(self) -> int:
        return 352

    def get_data_shape(self) -> tuple[int, ...]:
        return (4, 4, 4)

    def get_data_dtype(self) -> np.dtype:
        raise self.error


def test_truncation_check_that_cannot_run_is_a_finding_not_a_pass(tmp_path):
    from nibabel.spatialimages import HeaderDataError

    path = tmp_path / "x.nii.gz"
    path.write_bytes(gzip.compress(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)).to_bytes()))
    msg = _data_damage(path, _Header(HeaderDataError("data code 999 not recognized")))
    assert msg == ("truncation check could not run: the header gives no voxel data size "
                   "(HeaderDataError: data code 999 not recognized)")
    # an unexpected exception is a bug: it is raised, not swallowed as a pass
    with pytest.raises(RuntimeError, match="a bug"):
        _data_damage(path, _Header(RuntimeError("a bug")))
    # a file that vanished between the header read and the check is said, not passed
    gone = tmp_path / "gone.nii.gz"
    msg = _data_damage(gone, nib.load(str(path)).header)
    assert msg is not None and msg.startswith("truncation check could not run: file not readable (FileNotFoundError")


def test_negative_dimension_in_a_release_image_is_reported_with_its_file(release_copy: Path) -> None:
    """nibabel loads a header whose dim is negative; the size it implies is negative, so before this fix the
    truncation check compared the file against a negative size and passed."""
    rel = "images/DUKE_001/duke_001_0001.nii.gz"
    path = release_copy / rel
    img = nib.load(str(path))
    data = bytearray(gzip.decompress(path.read_bytes()))
    hdr = img.header.copy()
    dim = hdr["dim"].copy()
    dim[1] = -dim[1]
    hdr["dim"] = dim
    data[:348] = hdr.binaryblock
    path.write_bytes(gzip.compress(bytes(data), mtime=0))
    assert nib.load(str(path)).header.get_data_shape()[0] < 0  # still loads: only the size check can tell

    problems = [p for p in verify_release(release_copy, checksums=False) if p.where == rel]
    damage = [p for p in problems if "truncation check could not run" in p.message]
    assert len(damage) == 1 and damage[0].check == "nifti", problems
    assert "negative dimension in data shape" in damage[0].message
