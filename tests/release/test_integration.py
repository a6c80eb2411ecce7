"""Synthetic DICOM (with PHI in its headers) -> `mamamia convert` -> `mamamia segment --ftv` -> `mamamia
release build` -> verify with the source's own identifying values: the release must carry none of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_dicom_to_verified_release(cli, tmp_path: Path) -> None:
    synth = pytest.importorskip("etl.synth.dicom")
    from etl.release.phi import source_values
    from etl.tables import read_table, write_table
    from tests.conftest import V1_TABLE

    dicom = tmp_path / "dicom"
    specs = [("DUKE_001", "DUKE", "SIEMENS", "axial", 5), ("NACT_01", "NACT", "GE", "sagittal", 3)]
    for i, (pid, ds, vendor, view, n) in enumerate(specs):
        synth.write_study(dicom / pid, synth.StudySpec(patient_id=pid, dataset=ds, vendor=vendor, view=view,
                                                         n_phases=n, matrix=(24, 24), n_slices=8), seed=i)
    values = source_values(dicom)
    assert "PatientName" in values.values() and "AccessionNumber" in values.values()

    staged = tmp_path / "staged"
    res = cli("convert", dicom, staged)
    assert res.exit_code == 0, res.stderr
    res = cli("segment", staged, "--ftv")
    assert res.exit_code == 0, res.stderr
    df = read_table(V1_TABLE)
    write_table(df[df["patient_id"].isin([s[0] for s in specs])].reset_index(drop=True), tmp_path / "table.parquet")
    out = tmp_path / "rel"
    # the shipped definition's naming and profile; two folds, as two cases cannot fill five
    from tests.release.release_helpers import write_definition

    definition = write_definition(tmp_path / "def.yaml", staged=str(staged), table=str(tmp_path / "table.parquet"),
                                  split={"seed": 42, "test_fraction": 0.2, "folds": 2})
    res = cli("release", "build", definition, "--out", out, "--staged", staged, "--table", tmp_path / "table.parquet")
    assert res.exit_code == 0, res.stderr
    res = cli("release", "verify", out, "--phi-from-dicom", dicom)
    assert res.exit_code == 0, res.stdout
    # the converter's measured geometry replaced the published values, and the profile orientation holds
    info = json.loads((out / "patient_info_files" / "nact_01.json").read_text())
    assert info["image"]["orientation"] == "RAS" and info["imaging_data"]["image_rows"] == 24
    assert json.loads((out / "patient_info_files" / "duke_001.json").read_text())["image"]["orientation"] == "LPS"
    # the segment stage's QC table and masks are carried into the release
    import pandas as pd

    qc = pd.read_parquet(out / "segmentation_qc.parquet")
    staged_qc = pd.read_parquet(staged / "segmentation_qc.parquet")
    pd.testing.assert_frame_equal(qc, staged_qc.sort_values("patient_id", ignore_index=True))
    assert (out / "segmentations" / "automatic" / "nact_01.nii.gz").read_bytes() == \
        (staged / "segmentations" / "automatic" / "nact_01.nii.gz").read_bytes()
    assert info["primary_lesion"]["mask"] == "automatic" and info["primary_lesion"]["bounding_box"]
