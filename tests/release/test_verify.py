"""Release verify: a sound release passes; each kind of damage is found and named."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from etl.release.manifest import write_manifest
from etl.release.verify import verify_release


def _checks(problems) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {(p.check, p.where) for p in problems}


def test_sound_release_verifies(release_dir: Path, cli) -> None:
    assert verify_release(release_dir) == []
    res = cli("release", "verify", release_dir, "--format", "json")
    assert res.exit_code == 0 and json.loads(res.stdout)["valid"] is True


def test_flipped_byte(release_copy: Path, cli) -> None:
    target = release_copy / "images" / "NACT_01" / "nact_01_0001.nii.gz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    problems = verify_release(release_copy)
    assert [p for p in problems if p.check == "checksum"] == [
        p for p in problems if p.where == "images/NACT_01/nact_01_0001.nii.gz"
    ]
    assert len(problems) == 1 and "does not match" in problems[0].message
    res = cli("release", "verify", release_copy)
    assert res.exit_code == 1 and "images/NACT_01/nact_01_0001.nii.gz" in res.stdout


def test_deleted_image(release_copy: Path) -> None:
    (release_copy / "images" / "DUKE_002" / "duke_002_0002.nii.gz").unlink()
    problems = verify_release(release_copy)
    assert ("checksum", "images/DUKE_002/duke_002_0002.nii.gz") in _checks(problems)
    img = [p for p in problems if p.check == "images"]
    assert len(img) == 1 and "DUKE_002" in img[0].where and "num_phases is 4" in img[0].message


def test_extra_files(release_copy: Path) -> None:
    (release_copy / "images" / "DUKE_001" / "duke_001_0009.nii.gz").write_bytes(b"stray")
    (release_copy / "notes.txt").write_text("scratch\n")
    (release_copy / "segmentations" / "expert" / "duke_999.nii.gz").write_bytes(b"x")
    write_manifest(release_copy)  # even with fresh checksums the files must belong to a row
    problems = verify_release(release_copy)
    files = {p.where for p in problems if p.check == "files"}
    assert files == {"images/DUKE_001/duke_001_0009.nii.gz", "notes.txt", "segmentations/expert/duke_999.nii.gz"}


def test_row_without_images(release_copy: Path) -> None:
    shutil.rmtree(release_copy / "images" / "ISPY2_102011")
    write_manifest(release_copy)
    problems = verify_release(release_copy)
    assert [(p.check, p.message) for p in problems] == [("images", "case has no image files")]
    assert "ISPY2_102011" in problems[0].where


def test_phi_in_json_sidecar(release_copy: Path, cli) -> None:
    p = release_copy / "patient_info_files" / "ispy1_1001.json"
    doc = json.loads(p.read_text())
    doc["imaging_data"]["PatientBirthDate"] = "19650412"
    doc["imaging_data"]["site"] = "DOE^JANE"
    p.write_text(json.dumps(doc))
    write_manifest(release_copy)
    phi = [p for p in verify_release(release_copy) if p.check == "phi"]
    wheres = sorted(x.where for x in phi)
    assert wheres == ["patient_info_files/ispy1_1001.json imaging_data.PatientBirthDate",
                      "patient_info_files/ispy1_1001.json imaging_data.site"]
    res = cli("release", "verify", release_copy)
    assert res.exit_code == 1 and "PatientBirthDate" in res.stdout and "DOE^JANE" in res.stdout


def test_phi_in_nifti_header_and_wrong_orientation(release_copy: Path) -> None:
    import nibabel as nib

    path = release_copy / "images" / "DUKE_001" / "duke_001_0000.nii.gz"
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    flipped = img.affine.copy()
    flipped[0, :] *= -1  # LPS -> RPS
    new = nib.Nifti1Image(data, flipped, img.header)
    new.set_qform(flipped, code=1)
    new.set_sform(flipped, code=1)
    new.header["descrip"] = b"ANON^PATIENT acc 12345"
    path.write_bytes(gzip.compress(new.to_bytes(), mtime=0))
    write_manifest(release_copy)
    problems = verify_release(release_copy)
    checks = {p.check for p in problems}
    assert {"orientation", "phi"} <= checks
    orient = [p for p in problems if p.check == "orientation"]
    assert len(orient) == 1 and "RPS" in orient[0].message and "LPS" in orient[0].message
    assert any("header descrip" in p.where for p in problems if p.check == "phi")


def test_table_damage_is_a_schema_problem(release_copy: Path) -> None:
    from etl.release.tableio import read_table, write_table

    df = read_table(release_copy / "clinical_and_imaging_info.parquet")
    df.loc[0, "pcr"] = 7
    write_table(df, release_copy / "clinical_and_imaging_info.parquet")
    write_manifest(release_copy)
    problems = verify_release(release_copy)
    schema = [p for p in problems if p.check == "schema"]
    assert any("pcr" in p.where and "7" in p.message for p in schema)
    assert any(p.where == "clinical_and_imaging_info.xlsx" and "pcr (1)" in p.message for p in schema)


def test_not_a_release(tmp_path: Path, cli) -> None:
    res = cli("release", "verify", tmp_path)
    assert res.exit_code == 1 and "not a release" in res.stdout


@pytest.mark.parametrize("key", ["PatientName", "patient_birth_date", "(0008,0050)", "OtherPatientIDs"])
def test_phi_keys_any_spelling(key: str) -> None:
    from etl.release.phi import key_is_phi

    assert key_is_phi(key)
    assert not key_is_phi("patient_id") and not key_is_phi("acquisition_date")


def test_metadata_consistency(release_copy: Path) -> None:
    doc = json.loads((release_copy / "croissant.json").read_text())
    doc["distribution"][0]["sha256"] = "0" * 64
    (release_copy / "croissant.json").write_text(json.dumps(doc))
    (release_copy / "provenance.json").write_text("{not json")
    write_manifest(release_copy)
    problems = {(p.check, p.where, p.message.split(":")[0]) for p in verify_release(release_copy)}
    assert ("metadata", "croissant.json", "sha256 of clinical_and_imaging_info.parquet does not match the file") in problems
    assert ("metadata", "provenance.json", "not valid JSON") in problems


def _write_dicom(path: Path, **values: str) -> None:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    for k, v in values.items():
        setattr(ds, k, v)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_source_dicom_values_found_literally(release_copy: Path, tmp_path: Path, cli) -> None:
    src = tmp_path / "dicom"
    _write_dicom(src / "s1" / "1.dcm", PatientName="SMITH^JOHN", PatientBirthDate="19650412", AccessionNumber="ACC7741209")
    (src / "notes.txt").write_text("not dicom")
    from etl.release.phi import source_values

    assert source_values(src) == {"SMITH^JOHN": "PatientName", "19650412": "PatientBirthDate", "ACC7741209": "AccessionNumber"}
    p = release_copy / "patient_info_files" / "nact_02.json"
    doc = json.loads(p.read_text())
    doc["imaging_data"]["scanner_model"] = "ACC7741209"  # an innocent-looking key: only the value gives it away
    p.write_text(json.dumps(doc))
    write_manifest(release_copy)
    assert verify_release(release_copy) == []
    res = cli("release", "verify", release_copy, "--phi-from-dicom", src)
    assert res.exit_code == 1
    assert "value of the source DICOM AccessionNumber ('ACC7741209')" in res.stdout
    assert "nact_02.json imaging_data.scanner_model" in res.stdout
