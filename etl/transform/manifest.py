"""Derive the release manifest (which TCIA case and series each table row is) from a table.

The TCIA names are not computed here: each collection's mapping file declares its TCIA collection and the
rule from the table id to the TCIA patient id (``tcia:`` section of ``mappings/<collection>.yaml``), so a new
collection is a new YAML file. Reading a manifest back (and applying exclusions) is ``etl.caselist``.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd

from etl.errors import ConfigError, ValidationFailed
from etl.transform.clinical import CollectionMapping, load_collections

MANIFEST_COLUMNS = ("patient_id", "dataset", "tcia_collection", "tcia_patient_id", "tcia_series_uid")


def manifest_from_table(table: pd.DataFrame, mappings: dict[str, CollectionMapping] | None = None) -> pd.DataFrame:
    """One manifest row per table row, in table order."""
    mappings = load_collections() if mappings is None else mappings
    for col in ("patient_id", "dataset", "tcia_series_uid"):
        if col not in table.columns:
            raise ValidationFailed(f"the table has no column {col!r}", "manifest from-table")
    rows = []
    for i, (pid, dataset, uid) in enumerate(zip(table["patient_id"], table["dataset"], table["tcia_series_uid"])):
        where = f"row {i}, patient_id {pid!r}"
        if pd.isna(pid) or pd.isna(dataset):
            raise ValidationFailed("patient_id and dataset must be present", where)
        m = mappings.get(str(dataset))
        if m is None or m.tcia is None:
            raise ConfigError(f"no mapping file declares TCIA naming for dataset {dataset!r}", where)
        tcia_pid = m.tcia.patient_id(str(pid))
        if tcia_pid is None:
            raise ValidationFailed(
                f"patient_id does not match the {dataset} id rule {m.tcia.match.pattern!r}", f"{where} ({m.path.name})"
            )
        rows.append((str(pid), str(dataset), m.tcia.collection, tcia_pid, "" if pd.isna(uid) else str(uid)))
    out = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    dup = out["patient_id"].duplicated()
    if dup.any():
        raise ValidationFailed(f"patient_id {out.loc[dup, 'patient_id'].iloc[0]!r} appears twice", "manifest from-table")
    return out


def manifest_csv(manifest: pd.DataFrame) -> str:
    """The manifest as CSV text (LF line ends, no index) so that regenerating it gives identical bytes."""
    from etl.safetext import csv_cell

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows([csv_cell(v) for v in row]
                     for row in manifest[list(MANIFEST_COLUMNS)].itertuples(index=False, name=None))
    return buf.getvalue()


def write_manifest(manifest: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    from etl.atomic import write_text

    return write_text(path, manifest_csv(manifest))
