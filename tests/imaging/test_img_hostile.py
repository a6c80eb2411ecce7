"""Hostile DICOM through `mamamia convert`: text with control characters, NULs or absurd lengths is cleaned or
refused with a warning naming the tag; an empty, zeroed or cut file beside the dynamic's images is named in a
one-line error, never a traceback, and nothing is written for that case."""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

import pydicom
import pytest

from etl.synth.dicom import StudySpec, StudyTruth, add_series, write_study


def study(tmp: Path, name: str, seed: int = 21, **kw) -> StudyTruth:
    base = dict(patient_id=name, vendor="SIEMENS", matrix=(16, 20), n_slices=5, n_phases=2, extra_non_dicom=False)
    return write_study(tmp / name, StudySpec(**{**base, **kw}), seed=seed)


def edit(files, **values) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values we write on purpose
        for f in files:
            ds = pydicom.dcmread(f)
            for k, v in values.items():
                setattr(ds, k, v)
            ds.save_as(f, enforce_file_format=True)


def test_control_characters_and_absurd_lengths_are_cleaned_or_refused(cli, tmp_path: Path) -> None:
    truth = study(tmp_path, "HOSTILE_1")
    huge = "A" * 5000
    edit(truth.files, ManufacturerModelName="Avanto\x00\x07 evil\r\nmodel", ClinicalTrialSiteName=huge,
         ClinicalTrialSiteID="Site\x00 B", SeriesDescription="ax dyn\x00\x1b[31m fl3d", PatientID="HOST\x00ILE_1")
    res = cli("convert", truth.root, tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    record = json.loads((tmp_path / "out" / "imaging" / "hostile_1.imaging.json").read_text())
    assert record["scanner_model"] == "Avanto evil model"
    assert record["site"] == "Site B"  # the 5000-character site name refused, the site id cleaned
    for tag in ("ManufacturerModelName", "ClinicalTrialSiteID", "SeriesDescription", "PatientID"):
        assert f"tag {tag}: control characters removed" in res.stderr, tag
    assert "tag ClinicalTrialSiteName: value of 5000 characters refused" in res.stderr
    assert res.stderr.count("tag ManufacturerModelName:") == 1  # once per value, not once per file
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "imaging" / "hostile_1.inventory.tsv").read_text()),
                               delimiter="\t"))
    assert [r["description"] for r in rows] == ["ax dyn [31m fl3d"] * 2  # one series per phase
    blob = b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.suffix in (".json", ".tsv"))
    assert b"\x00" not in blob and b"\\u0000" not in blob and huge.encode() not in blob


def test_identifier_with_control_characters_is_refused(cli, tmp_path: Path) -> None:
    truth = study(tmp_path, "HOSTILE_2")
    edit(truth.files[:1], SeriesInstanceUID=truth.series_uids[0] + "\x00\x01")
    res = cli("convert", truth.root, tmp_path / "out")
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    (line,) = [x for x in res.stderr.splitlines() if x.startswith("error:")]
    assert "tag SeriesInstanceUID: control characters" in line and truth.files[0].name in line
    assert not (tmp_path / "out" / "imaging").exists()


@pytest.mark.parametrize("damage,message", [
    ("empty", "empty file (0 bytes), in a folder of the series' images: a slice may be missing"),
    ("zeroed", "no DICOM header: the file starts with zero bytes only"),
    ("cut_preamble", "truncated file: 130 bytes, cut before the DICOM header"),
    ("cut_header", "truncated file"),
    ("cut_pixels", "truncated file: pixel data needs"),
])
def test_damaged_file_in_a_series_is_named(cli, tmp_path: Path, damage: str, message: str) -> None:
    truth = study(tmp_path, "HOSTILE_3")
    victim = truth.files[3]
    blob = victim.read_bytes()
    cut = {"empty": b"", "zeroed": bytes(len(blob)), "cut_preamble": blob[:130], "cut_header": blob[:400],
           "cut_pixels": blob[:-50]}[damage]
    victim.write_bytes(cut)
    res = cli("convert", truth.root, tmp_path / "out")
    assert res.exit_code == 1 and "Traceback" not in res.stderr, res.stderr
    (line,) = [x for x in res.stderr.splitlines() if x.startswith("error:")]
    assert message in line and str(victim) in line, line
    assert not (tmp_path / "out" / "imaging").exists() and not list((tmp_path / "out").rglob("*.nii.gz"))
    dry = cli("convert", truth.root, tmp_path / "out", "--dry-run")
    assert dry.exit_code == 1 and f"HOSTILE_3: FAILED {line[len('error: '):]}" in dry.stdout


def test_empty_file_outside_the_dynamic_is_a_warning(cli, tmp_path: Path) -> None:
    truth = study(tmp_path, "HOSTILE_4")
    _, files = add_series(truth, "ax t2 tse", seconds=-300, matrix=(12, 20))
    files[0].write_bytes(b"")
    res = cli("convert", truth.root, tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    assert "HOSTILE_4: converted, 2 phases" in res.stdout
    (line,) = [x for x in res.stderr.splitlines() if "empty file (0 bytes)" in x]
    assert "ignored" in line and str(files[0]) in line
