"""``segmentation_qc.parquet``: per case, the automatic mask's volume and lesion count and its agreement with
the expert mask (Dice, HD95, mean surface distance in mm) when both exist; cases with only an expert mask
get their expert volume. Same columns and metrics as the segment stage (``etl.segment.stage.QC_COLUMNS``,
``etl.segment.metrics``), so a release reports the same numbers whichever stage computed them.

If the segment stage already wrote a ``segmentation_qc.parquet`` into the staged directory its rows are
carried over (restricted to the released cases, sorted) instead of being recomputed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from etl.types import Spacing


def _crop_to_mask(mask: np.ndarray, pad: int = 1) -> np.ndarray:
    """The mask cut to its bounding box plus a margin: same components, far less labelling work."""
    idx = np.nonzero(mask)
    if len(idx[0]) == 0:
        return mask
    sl = tuple(slice(max(int(i.min()) - pad, 0), int(i.max()) + pad + 1) for i in idx)
    return mask[sl]


def _none_if_nan(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def case_row(patient_id: str, spacing: Spacing, automatic: np.ndarray | None,
             expert: np.ndarray | None) -> dict[str, object]:
    """One row in the segment stage's QC columns; a case with only an expert mask gets its expert volume."""
    from etl.segment.metrics import agreement, component_count, volume_mm3

    row: dict[str, object] = {
        "patient_id": patient_id,
        "mask_volume_mm3": None, "lesion_count": None,
        "has_expert": expert is not None,
        "expert_volume_mm3": volume_mm3(expert, spacing) if expert is not None else None,
        "dice": None, "hd95_mm": None, "msd_mm": None,
    }
    if automatic is not None:
        row["mask_volume_mm3"] = volume_mm3(automatic, spacing)
        row["lesion_count"] = component_count(_crop_to_mask(automatic))
        if expert is not None and expert.shape == automatic.shape:
            a = agreement(automatic, expert, spacing)
            row.update(dice=a.dice, hd95_mm=_none_if_nan(a.hd95_mm), msd_mm=_none_if_nan(a.msd_mm))
    return row


def qc_frame(rows: list[dict]) -> pd.DataFrame:
    from etl.segment.stage import QC_COLUMNS

    df = pd.DataFrame(rows, columns=list(QC_COLUMNS)).astype(QC_COLUMNS)
    return df.sort_values("patient_id", kind="mergesort").reset_index(drop=True)


def carried_over(staged_qc: Path, patient_ids: set[str]) -> pd.DataFrame:
    """Rows of a staged QC table for the released cases, sorted deterministically."""
    df = pd.read_parquet(staged_qc)
    if "patient_id" not in df.columns:
        from etl.errors import InputUnreadable

        raise InputUnreadable("segmentation QC table has no patient_id column", str(staged_qc))
    df = df[df["patient_id"].astype(str).str.upper().isin(patient_ids)]
    keys = ["patient_id"] + [c for c in ("mask",) if c in df.columns]
    return df.sort_values(keys, kind="mergesort").reset_index(drop=True)


def write_qc(df: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from etl.atomic import atomic_path

    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp, compression="zstd")
