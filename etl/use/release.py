"""Python API for people who use a release (notebooks, training scripts).

    >>> from etl import open_release
    >>> rel = open_release("releases/mama-mia-1.0.0")
    >>> rel.table                                    # typed pandas DataFrame, one row per case (+ split)
    >>> her2_pcr = rel.cases(where="her2 == 1 and pcr == 1")   # rows + absolute image / mask paths
    >>> img = rel.image("DUKE_001", 1)               # nibabel image of the first post-contrast phase
    >>> train = rel.split("train")                   # rows of the training cases (with fold)

Filtering uses pandas expressions on the canonical columns; a comparison with a missing value is false
(``pcr == 1`` never selects a case whose pcr is unknown).
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from etl.errors import InputUnreadable, ValidationFailed
from etl.layout import TEMPLATE_KEYS, Layout

TABLE = "clinical_and_imaging_info.parquet"
SPLITS = "train_test_splits.csv"
PATH_COLUMNS = ("image_paths", "expert_mask_path", "automatic_mask_path", "mask_path", "patient_info_path")


class Release:
    """A built release directory, opened read-only."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        if not (self.root / TABLE).is_file():
            raise InputUnreadable("not a release directory (no clinical_and_imaging_info.parquet)", str(self.root))
        naming = self.provenance.get("definition", {}).get("naming") or {}
        if all(k in naming for k in TEMPLATE_KEYS):
            self.layout = Layout(self.root, {k: str(naming[k]) for k in TEMPLATE_KEYS})
        else:
            self.layout = Layout.from_definition(self.root)

    def __repr__(self) -> str:
        rel = self.provenance.get("release", {})
        return f"Release({rel.get('name', '?')}-{rel.get('version', '?')}, {len(self.table)} cases, {self.root})"

    @cached_property
    def provenance(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / "provenance.json").read_text())
        except (OSError, ValueError):
            return {}

    @cached_property
    def table(self) -> pd.DataFrame:
        """The typed table (49 variables + split + fold), one row per case, sorted by patient_id.

        Numbers are nullable (``Int64``, ``Float64``), lists are Python lists (``acquisition_times``:
        ``[0, 584, 714]`` seconds, ``pixel_spacing``: ``[0.7031, 0.7031]``) and dates ``datetime64``, as the
        Parquet stores them; ``text_table`` has the v1 published text forms instead."""
        import pyarrow.parquet as pq

        from etl.validate.schema import load_schema

        df = self.text_table.copy()
        typed = pq.read_table(self.root / TABLE)
        order = {pid: i for i, pid in enumerate(typed.column("patient_id").to_pylist())}
        rows = [order[pid] for pid in df["patient_id"].astype(str)]
        for name, fmt in load_schema().formats().items():
            if name not in df.columns or name not in typed.column_names:
                continue
            values = typed.column(name).take(rows)
            if fmt in ("list_float", "list_int"):
                df[name] = pd.Series(values.to_pylist(), index=df.index, dtype=object)
            elif fmt == "date":
                df[name] = pd.to_datetime(pd.Series(values.to_pylist(), index=df.index))
        return df

    @cached_property
    def text_table(self) -> pd.DataFrame:
        """The table in the canonical text form of the v1 drop-in (lists ``"[0, 584, 714]"``, dates
        ``"yyyy/mm/dd"``): what ``mamamia query`` prints and what the xlsx holds."""
        from etl.release.tableio import read_table
        from etl.split import read_split

        df = read_table(self.root / TABLE)
        if (self.root / SPLITS).exists():
            sp = read_split(self.root / SPLITS)[["patient_id", "split", "fold"]]
            df = df.drop(columns=[c for c in ("split", "fold") if c in df.columns]).merge(sp, on="patient_id", how="left")
            df["split"] = df["split"].astype("string")
        return df.reset_index(drop=True)

    def paths(self, patient_id: str) -> dict[str, Any]:
        """Absolute paths of one case's files (None for a mask the case does not have)."""
        expert = self.layout.expert_mask(patient_id)
        automatic = self.layout.automatic_mask(patient_id)
        mask = expert if expert.exists() else (automatic if automatic.exists() else None)
        return {
            "image_paths": [str(p) for p in self.layout.images(patient_id)],
            "expert_mask_path": str(expert) if expert.exists() else None,
            "automatic_mask_path": str(automatic) if automatic.exists() else None,
            "mask_path": str(mask) if mask else None,
            "patient_info_path": str(self.layout.patient_info(patient_id)),
        }

    def with_paths(self, df: pd.DataFrame | None = None) -> pd.DataFrame:
        """Rows of ``df`` (default: all) with the path columns appended."""
        df = self.table if df is None else df
        extra = pd.DataFrame([self.paths(pid) for pid in df["patient_id"].astype(str)], index=df.index,
                             columns=list(PATH_COLUMNS))
        return pd.concat([df, extra], axis=1)

    def cases(self, where: str | None = None) -> pd.DataFrame:
        """Rows matching a boolean expression (``"her2 == 1 and pcr == 1"``), with absolute file paths.

        Same semantics as ``mamamia query --where`` (one engine, DuckDB): missing values never match.
        """
        from etl.use.query import filter_cases

        df = self.table
        if where:  # the expression runs on the text form (one engine with `mamamia query`); rows come typed
            hits = set(filter_cases(self.text_table, where)["patient_id"].astype(str))
            df = df[df["patient_id"].astype(str).isin(hits)]
        return self.with_paths(df).reset_index(drop=True)

    def split(self, name: str, fold: int | None = None) -> pd.DataFrame:
        """Rows of ``train`` or ``test`` (optionally one fold of train) with paths."""
        if name not in ("train", "test"):
            raise ValidationFailed(f"split must be train or test, got {name!r}", "split")
        df = self.table[self.table["split"] == name]
        if fold is not None:
            df = df[df["fold"] == fold]
        return self.with_paths(df).reset_index(drop=True)

    def image(self, patient_id: str, phase: int = 0):  # type: ignore[no-untyped-def]
        """A phase as a nibabel image (0 = pre-contrast)."""
        import nibabel as nib

        path = self.layout.image(patient_id, phase)
        if not path.exists():
            raise InputUnreadable(f"no phase {phase} for {patient_id}", str(path))
        return nib.load(str(path))

    def mask(self, patient_id: str, kind: str = "expert"):  # type: ignore[no-untyped-def]
        """The expert (default) or automatic mask as a nibabel image; falls back to automatic when no expert mask."""
        import nibabel as nib

        if kind not in ("expert", "automatic"):
            raise ValidationFailed(f"mask kind must be expert or automatic, got {kind!r}", "kind")
        path = self.layout.expert_mask(patient_id) if kind == "expert" else self.layout.automatic_mask(patient_id)
        if not path.exists() and kind == "expert":
            path = self.layout.automatic_mask(patient_id)
        if not path.exists():
            raise InputUnreadable(f"no {kind} mask for {patient_id}", str(path))
        return nib.load(str(path))

    def patient_info(self, patient_id: str) -> dict[str, Any]:
        return json.loads(self.layout.patient_info(patient_id).read_text())


def open_release(path: str | os.PathLike[str]) -> Release:
    """Open a release directory built by ``mamamia release build``."""
    return Release(path)


def is_release(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return p.is_dir() and (p / TABLE).is_file()


def table_with_paths(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The release table with absolute path columns (``mamamia query`` on a release uses this)."""
    rel = open_release(path)
    df = rel.with_paths(rel.text_table)
    # lists are awkward in CSV/SQL: give the phase files as one ';'-joined text column as well
    df["image_paths"] = df["image_paths"].map(lambda ps: ";".join(ps))
    return df
