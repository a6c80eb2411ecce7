"""Seeded synthetic DCE-MRI data for the demo and every stage's tests.

- ``phantom``: breast phantom on a voxel grid (numpy only): phases, lesion mask, spacing, times.
- ``dicom``: one study written with pydicom from a phantom and a header spec (vendor styles, views,
  series layouts, obliquity, rescale, fake PHI), returning the truth the converter must reproduce.
- ``corpus``: many studies in TCIA's download shape plus ground-truth masks; studies driven by v1 rows.
- ``staged``: phantoms written as staged cases (images + expert mask) for the segment stage's tests.
- ``clinical_sources``: synthetic clinical source spreadsheets (owned by the clinical stage).
"""
