"""``data_dictionary.md``: every variable of the release table from the schema, with what the release holds.

Generated, never hand-edited: name, group, type (and stored Parquet type), unit, allowed values and
description come from ``schemas/clinical_imaging.yaml``; the count of non-missing values comes from the
released table, so the dictionary cannot drift from the data.
"""

from __future__ import annotations

import pandas as pd

from etl.layout import Layout

_PARQUET_TYPE = {"list_float": "list<double>", "list_int": "list<int64>", "date": "date32"}
_DTYPE_TEXT = {"Int64": "integer (nullable)", "float64": "float", "str": "text"}


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _review_rows(layout: Layout) -> list[str]:
    from etl.release.quality import dictionary_rows

    return dictionary_rows(layout)


def data_dictionary(df: pd.DataFrame, release_id: str, layout: Layout | None = None) -> str:
    """The dictionary; ``layout``: the release's naming (default: v1), for the names of nested files."""
    from etl.validate.schema import load_schema

    schema = load_schema()
    n = len(df)
    lines = [
        f"# Data dictionary: {release_id}",
        "",
        "Generated from the schema (`schemas/clinical_imaging.yaml`) and the released table; do not edit.",
        "",
        "Files: `clinical_and_imaging_info.parquet` (typed: lists as Parquet lists, dates as date32, plus the "
        "`split` column), `clinical_and_imaging_info.xlsx` (drop-in for v1: sheets `dataset_info` and `legend`, "
        "lists and dates in their published text form). Missing means unknown (empty cell / null), never 0.",
        "",
        f"Rows: {n}.",
        "",
        "| # | variable | group | type | stored as | unit | allowed values | present | description |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, (name, spec) in enumerate(schema.columns.items(), 1):
        present = int(df[name].notna().sum()) if name in df.columns else 0
        dtype = _DTYPE_TEXT.get(spec.dtype, spec.dtype)
        stored = _PARQUET_TYPE.get(spec.format or "", {"Int64": "int64", "float64": "double", "str": "string"}.get(spec.dtype, spec.dtype))
        if spec.format:
            dtype = f"text `{spec.format}`"
        allowed = ", ".join(str(a) for a in spec.allowed) if spec.allowed else ""
        if not allowed and (spec.min is not None or spec.max is not None):
            allowed = f"{'' if spec.min is None else spec.min} .. {'' if spec.max is None else spec.max}"
        lines.append(
            f"| {i} | `{name}` | {spec.group} | {dtype} | {stored} | {_cell(spec.unit or '')} | {_cell(allowed)} | "
            f"{present}/{n} | {_cell(spec.description)} |"
        )
    lines += [
        f"| {len(schema.columns) + 1} | `split` | release | text | string |  | train, test | "
        f"{int(df['split'].notna().sum()) if 'split' in df.columns else 0}/{n} | Train/test assignment "
        "(also in `train_test_splits.csv` with the cross-validation fold). Parquet only. |",
        "",
        "## Other files",
        "",
        "| file | content |",
        "| --- | --- |",
        "| `train_test_splits.csv` | `patient_id`, `split` (train/test), `fold` (0..K-1 for training cases, empty for test) |",
        "| `splits_final.json` | the same folds in nnU-Net v2 form (list of `{train, val}` case identifiers) |",
        "| `images/<PATIENT_ID>/<patient_id>_<phase:04d>.nii.gz` | DCE-MRI phases, 0000 = pre-contrast, then post-contrast in acquisition order |",
        "| `segmentations/expert/<patient_id>.nii.gz` | expert tumour segmentation (when available) |",
        "| `segmentations/automatic/<patient_id>.nii.gz` | automatic tumour segmentation (when available) |",
        "| `patient_info_files/<patient_id>.json` | `primary_lesion` (mask used, inclusive voxel bounding box "
        "`x/y/z_min/max` on the NIfTI array axes 0/1/2, voxels, volume_mm3), `image` (shape, spacing, orientation), "
        "`imaging_data` (the imaging variables, typed) |",
        "| `segmentation_qc.parquet` | per case: automatic mask `mask_volume_mm3` and `lesion_count` (26-connected), "
        "`has_expert`, `expert_volume_mm3`, and `dice`, `hd95_mm`, `msd_mm` (mm) of the automatic mask against the "
        "expert mask when both exist |",
        *_review_rows(layout or Layout.from_definition(".")),
        "| `croissant.json` | Croissant 1.0 metadata |",
        "| `provenance.json` | tool version, inputs with sha256, effective release definition, stage ledger |",
        "| `SHA256SUMS` | checksum of every other file (`sha256sum -c SHA256SUMS`) |",
        "",
    ]
    return "\n".join(lines)
