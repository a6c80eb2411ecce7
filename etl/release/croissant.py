"""``croissant.json``: Croissant 1.0 metadata so ML tooling can load the table, splits and images.

Describes the typed Parquet table (one field per column, types from the schema), the split CSV, and the
image / mask / patient-info file sets with their ``includes`` globs. Checksums are those of the built files.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from etl.contracts import SPLITS, TABLE, TABLE_XLSX
from etl.release.definition import ReleaseDefinition

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"

# The Croissant 1.0 JSON-LD context (as mlcroissant writes it for 1.0 documents).
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}


def _data_type(spec: Any) -> str:
    if spec is None:
        return "sc:Text"
    if spec.format == "date":
        return "sc:Date"
    if spec.format in ("list_float",):
        return "sc:Float"
    if spec.format in ("list_int",):
        return "sc:Integer"
    return {"Int64": "sc:Integer", "float64": "sc:Float"}.get(spec.dtype, "sc:Text")


def croissant(defn: ReleaseDefinition, df: pd.DataFrame, sums: dict[str, str]) -> dict[str, Any]:
    from etl.validate.schema import load_schema

    schema = load_schema()
    raw = defn.raw
    licence = raw.get("release_license") or {}
    datasets = sorted(str(d) for d in df["dataset"].dropna().unique()) if "dataset" in df.columns else []
    table_fields = []
    for name in df.columns:
        spec = schema.columns.get(name)
        field: dict[str, Any] = {
            "@type": "cr:Field",
            "@id": f"clinical_and_imaging_info/{name}",
            "name": name,
            "description": spec.description if spec else "Train/test assignment of the case.",
            "dataType": _data_type(spec),
            "source": {"fileObject": {"@id": TABLE}, "extract": {"column": name}},
        }
        if spec is not None and spec.format in ("list_float", "list_int"):
            field["repeated"] = True
        table_fields.append(field)
    split_fields = [
        {
            "@type": "cr:Field",
            "@id": f"train_test_splits/{name}",
            "name": name,
            "description": desc,
            "dataType": dtype,
            "source": {"fileObject": {"@id": SPLITS}, "extract": {"column": name}},
        }
        for name, dtype, desc in (
            ("patient_id", "sc:Text", "Case identifier (as in the table)."),
            ("split", "sc:Text", "train or test."),
            ("fold", "sc:Integer", "Cross-validation fold of a training case (empty for test cases)."),
        )
    ]
    distribution: list[dict[str, Any]] = []
    for rel, fmt, desc in (
        (TABLE, "application/x-parquet", "Typed 49-variable clinical and imaging table plus split."),
        (TABLE_XLSX, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         "Drop-in table for v1 users: sheets dataset_info and legend."),
        (SPLITS, "text/csv", "Train/test split and cross-validation folds."),
    ):
        if rel in sums:
            distribution.append(
                {"@type": "cr:FileObject", "@id": rel, "name": rel, "description": desc, "contentUrl": rel,
                 "encodingFormat": fmt, "sha256": sums[rel]}
            )
    layout = defn.layout(".")
    for set_id, glob, desc in (
        ("images", layout.glob("image"), "DCE-MRI phases as gzipped NIfTI, one folder per case."),
        ("expert_segmentations", layout.glob("expert_mask"), "Expert tumour segmentations."),
        ("automatic_segmentations", layout.glob("automatic_mask"), "Automatic tumour segmentations."),
        ("patient_info_files", layout.glob("patient_info"), "Per-case lesion bounding box and imaging data."),
    ):
        prefix = glob.split("*")[0]
        if any(rel.startswith(prefix) for rel in sums):
            enc = "application/json" if glob.endswith(".json") else "application/gzip"
            distribution.append(
                {"@type": "cr:FileSet", "@id": set_id, "name": set_id, "description": desc,
                 "encodingFormat": enc, "includes": glob}
            )
    from etl.release.quality import croissant_parts  # ratings + corrections, when the release has them

    review_files, review_records = croissant_parts(sums, layout)
    distribution += review_files
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": defn.name,
        "description": str(raw.get("description") or raw.get("title") or defn.name).strip(),
        "version": defn.version,
        "license": licence.get("url") or licence.get("name") or "",
        "url": str(raw.get("homepage") or ""),
        "citeAs": str(raw.get("citation") or "").strip(),
        "keywords": ["breast cancer", "DCE-MRI", "segmentation", "pCR", *datasets],
        "isLiveDataset": False,
        **({"datePublished": str(raw["date_published"])} if raw.get("date_published") else {}),
        "distribution": distribution,
        "recordSet": [
            {"@type": "cr:RecordSet", "@id": "clinical_and_imaging_info", "name": "clinical_and_imaging_info",
             "description": "One record per case.", "key": {"@id": "clinical_and_imaging_info/patient_id"},
             "field": table_fields},
            {"@type": "cr:RecordSet", "@id": "train_test_splits", "name": "train_test_splits",
             "description": "Train/test assignment per case.", "field": split_fields},
            *review_records,
        ],
    }
    return doc


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
