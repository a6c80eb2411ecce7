"""Seeded synthetic DCE-MRI data for the demo and every stage's tests.

- ``phantom``: breast phantom on a voxel grid (numpy only): phases, lesion mask, spacing, times; the "easy"
  preset, whose lesion FTV finds by construction.
- ``hard_phantom``: the "hard" preset (same anatomy): weak heterogeneous and non-mass lesions, background
  enhancement, rigid motion between phases, bias field, Rician noise; for measuring segmentation methods.
- ``dicom``: one study written with pydicom from a phantom and a header spec (vendor styles, views,
  series layouts, obliquity, rescale, fake PHI), returning the truth the converter must reproduce.
- ``corpus``: many studies in TCIA's download shape plus ground-truth masks; studies driven by v1 rows.
- ``staged``: phantoms (either preset) written as staged cases (images + expert mask) for the segment
  stage's tests and benchmark.
- ``clinical_sources``: synthetic clinical source spreadsheets (owned by the clinical stage).
"""
