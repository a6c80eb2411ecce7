"""Per-case ``patient_info_files/<id>.json``: lesion bounding box, image geometry and imaging data.

Mirrors the v1 file's two sections (``primary_lesion``, ``imaging_data``) with typed values. The bounding
box is in voxel indices of the released NIfTI (nibabel array axes 0/1/2 named x/y/z, inclusive bounds),
computed from the expert mask when there is one, else from the automatic mask; ``mask`` says which.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def jsonable(value: Any) -> Any:
    """Plain JSON value: pandas NA/NaN -> null, numpy scalars -> Python numbers."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value if isinstance(value, (int, str)) else str(value)


def _parse_list(text: Any, kind: type) -> Any:
    """Typed list from the published text form (``"[0, 584]"``); the text itself if it does not parse."""
    if text is None or text is pd.NA or (isinstance(text, float) and math.isnan(text)):
        return None
    s = str(text).strip()
    if s.startswith("[") and s.endswith("]"):
        try:
            body = [x for x in s[1:-1].split(",") if x.strip()]
            return [int(float(x)) if kind is int else float(x) for x in body]
        except ValueError:
            return s
    return s


def lesion_bbox(mask: np.ndarray) -> dict[str, int] | None:
    """Inclusive voxel bounds of every nonzero voxel; None for an empty mask."""
    idx = np.nonzero(mask)
    if len(idx[0]) == 0:
        return None
    out = {}
    for name, axis in zip("xyz", idx):
        out[f"{name}_min"] = int(axis.min())
        out[f"{name}_max"] = int(axis.max())
    return out


def patient_info(
    row: dict[str, Any],
    imaging_columns: list[str],
    image_header: Any,
    orientation: str,
    mask: np.ndarray | None,
    mask_source: str | None,
) -> dict[str, Any]:
    """The JSON document for one case (deterministic key order)."""
    imaging: dict[str, Any] = {}
    for col in imaging_columns:
        value = row.get(col)
        if col == "pixel_spacing":
            imaging[col] = _parse_list(value, float)
        elif col == "acquisition_times":
            imaging[col] = _parse_list(value, int)
        else:
            imaging[col] = jsonable(value)
    zooms = [float(z) for z in image_header.get_zooms()[:3]]
    lesion: dict[str, Any] = {"mask": mask_source, "bounding_box": None, "voxels": None}
    if mask is not None:
        lesion["bounding_box"] = lesion_bbox(mask)
        lesion["voxels"] = int(np.count_nonzero(mask))
        lesion["volume_mm3"] = round(lesion["voxels"] * float(np.prod(zooms)), 3)
    return {
        "patient_id": str(row["patient_id"]),
        "dataset": jsonable(row.get("dataset")),
        "primary_lesion": lesion,
        "image": {
            "shape": [int(n) for n in image_header.get_data_shape()[:3]],
            "spacing_mm": [round(z, 6) for z in zooms],
            "orientation": orientation,
            "num_phases": jsonable(row.get("num_phases")),
        },
        "imaging_data": imaging,
    }


def merge(staged: Any, computed: dict[str, Any]) -> dict[str, Any]:
    """Staged keys kept, computed keys win; nested objects merged the same way. Key order: computed first."""
    if not isinstance(staged, dict):
        return computed
    out: dict[str, Any] = {}
    for key, value in computed.items():
        old = staged.get(key)
        out[key] = merge(old, value) if isinstance(value, dict) and isinstance(old, dict) else value
    for key in sorted(k for k in staged if k not in computed):
        out[key] = staged[key]
    return out


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def load_mask(path: Path) -> np.ndarray:
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    img = nib.load(str(path))
    if not isinstance(img, nib.Nifti1Image):  # NIfTI-2 is a subclass
        raise ImageFileError(f"not a NIfTI image ({type(img).__name__})")
    return np.asanyarray(img.dataobj) > 0
