"""The release stage's door to the 49-variable table: the lead's ``etl.tables`` and ``etl.validate.schema``
plus the one column a release adds (``split``, Parquet only; the xlsx drop-in keeps exactly the 49).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from etl.types import StrPath

if TYPE_CHECKING:
    from etl.validate.schema import Report

EXTRA_COLUMNS = ("split",)


def column_names() -> list[str]:
    from etl.validate.schema import column_names as names

    return list(names())


def base_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The 49 variables only (release extras dropped)."""
    return df.drop(columns=[c for c in EXTRA_COLUMNS if c in df.columns])


def read_table(path: StrPath, sheet: str = "dataset_info") -> pd.DataFrame:
    """Canonical table (typed per the schema); a release Parquet keeps its ``split`` column as text."""
    from etl.tables import read_table as lead_read

    df = lead_read(path, sheet=sheet)
    for c in EXTRA_COLUMNS:
        if c in df.columns:
            df[c] = df[c].astype("string")
    return df


def write_table(df: pd.DataFrame, path: StrPath) -> Path:
    """Parquet keeps the extras (typed text column after the 49); xlsx/csv carry the 49 variables only."""
    from etl.tables import write_table as lead_write

    path = Path(path)
    return lead_write(df if path.suffix.lower() == ".parquet" else base_frame(df), path)


def coerce(df: pd.DataFrame) -> pd.DataFrame:
    from etl.validate.schema import coerce_frame

    return coerce_frame(df)


def validate(df: pd.DataFrame) -> Report:
    """The lead's schema report for the 49 variables (``report.errors`` / ``report.warnings``)."""
    from etl.validate.schema import validate_frame

    return validate_frame(base_frame(df))
