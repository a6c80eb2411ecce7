"""A tiny seeded DICOM corpus for the extract tests: real DICOM Part 10 bytes, a few 8x8 slices per series.

Layout is what the NBIA stand-in serves: ``<root>/<Collection>/<PatientID>/<SeriesInstanceUID>/*.dcm``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid


@dataclass(frozen=True)
class CorpusCase:
    release_id: str
    collection: str
    patient: str
    series: tuple[str, ...]  # SeriesInstanceUIDs, phase order


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def write_series(folder: Path, seed: int, patient: str, study_uid: str, series_uid: str, number: int, slices: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        sop = _uid(seed, series_uid, k)
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop
        ds.PatientID = patient
        ds.PatientName = patient
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = number
        ds.InstanceNumber = k + 1
        ds.Modality = "MR"
        ds.SeriesDescription = f"DCE phase {number - 1}"
        ds.Manufacturer = "SYNTH"
        ds.StudyDate = "20200101"
        ds.ImagePositionPatient = [0.0, 0.0, float(k * 2)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 2.0
        ds.Rows = ds.Columns = 8
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = rng.integers(0, 4000, size=(8, 8), dtype=np.uint16).tobytes()
        ds.save_as(folder / f"{sop}.dcm", enforce_file_format=True)


def write_corpus(root: Path, n_cases: int, seed: int = 7, phases: int = 3, slices: int = 3,
                 collection: str = "Synth-Breast-MRI", prefix: str = "SYNTH") -> list[CorpusCase]:
    cases = []
    for i in range(1, n_cases + 1):
        patient = f"Breast_MRI_{i:03d}"
        study = _uid(seed, patient, "study")
        uids = []
        for p in range(phases):
            uid = _uid(seed, patient, "series", p)
            write_series(root / collection / patient / uid, seed * 1000 + i * 10 + p, patient, study, uid, p + 1, slices)
            uids.append(uid)
        cases.append(CorpusCase(f"{prefix}_{i:03d}", collection, patient, tuple(uids)))
    return cases


def write_manifest(path: Path, cases: list[CorpusCase]) -> Path:
    lines = ["patient_id,dataset,tcia_collection,tcia_patient_id,tcia_series_uid"]
    for c in cases:
        lines.append(f"{c.release_id},{c.release_id.split('_')[0]},{c.collection},{c.patient},{c.series[1]}")
    path.write_text("\n".join(lines) + "\n")
    return path


TOKEN = "synthetic-token-" + "Zq8v3XkP0w"  # a value that cannot occur by chance in logs or files


def write_synapse_tree(root: Path, n_cases: int, seed: int = 3) -> Path:
    """A small MAMA-MIA-shaped project tree: images/, segmentations/, patient_info_files/, tables."""
    rng = np.random.default_rng(seed)
    for i in range(1, n_cases + 1):
        pid = f"SYNTH_{i:03d}"
        img = root / "images" / pid
        img.mkdir(parents=True, exist_ok=True)
        for ph in range(2):
            (img / f"{pid.lower()}_{ph:04d}.nii.gz").write_bytes(rng.bytes(int(rng.integers(2000, 6000))))
        seg = root / "segmentations" / "expert"
        seg.mkdir(parents=True, exist_ok=True)
        (seg / f"{pid.lower()}.nii.gz").write_bytes(rng.bytes(1500))
    (root / "clinical_and_imaging_info.xlsx").write_bytes(rng.bytes(4000))
    (root / "train_test_splits.csv").write_text("patient_id,split\n" + "".join(f"SYNTH_{i:03d},train\n" for i in range(1, n_cases + 1)))
    return root


def series_of(cases: list[CorpusCase]) -> list[str]:
    return [u for c in cases for u in c.series]
