"""Join everything known about each case into the 49-variable table.

Precedence, per collection and variable: a source spreadsheet where a mapping file gives the variable (the
source is authoritative, including its blanks) > the previous release table (``--base``, normalized by
``mappings/normalize.yaml``) > the imaging JSON written by ``convert`` > null. Rows are the manifest's cases
minus exclusions, in manifest order; ``patient_id``, ``dataset`` and ``tcia_series_uid`` come from the
manifest. The lineage records, for every variable and collection, which input and rule produced how many
values, so any cell of a release can be traced back.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from etl.errors import ConfigError, InputUnreadable, ValidationFailed
from etl.hashing import sha256_file
from etl.transform.clinical import (
    CollectionMapping,
    Normalizer,
    apply_mapping,
    check_targets,
    load_collections,
    read_source,
)

log = logging.getLogger("etl.transform.table")

MANIFEST_OWNED = ("patient_id", "dataset", "tcia_series_uid")
IMAGING_SUFFIX = ".imaging.json"


@dataclass(frozen=True)
class Case:
    """The part of a manifest row the table needs."""

    patient_id: str
    dataset: str
    tcia_series_uid: str = ""


@dataclass
class BuildResult:
    table: pd.DataFrame
    lineage: dict[str, Any]
    normalizations: list[dict[str, Any]] = field(default_factory=list)


def resolve_sources(named: Mapping[str, str | os.PathLike[str]], mappings: Mapping[str, CollectionMapping]) -> dict[str, Path]:
    """``{"duke": path}`` -> ``{"DUKE": path}``; a name is a mapping file's stem or its dataset."""
    by_name: dict[str, str] = {}
    for ds, m in mappings.items():
        if m.source is not None:
            by_name[m.path.stem.lower()] = ds
            by_name[ds.lower()] = ds
    out: dict[str, Path] = {}
    for name, path in named.items():
        found = by_name.get(name.lower())
        if found is None:
            known = sorted({m.path.stem for m in mappings.values() if m.source is not None})
            raise ConfigError(f"no mapping with a source for {name!r} (known: {', '.join(known)})", f"--source {name}=...")
        if found in out:
            raise ConfigError(f"source for {found} given twice", f"--source {name}=...")
        out[found] = Path(path)
    return out


def find_imaging_files(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """``{PATIENT_ID: file}`` for every ``<patient_id>.imaging.json`` under ``folder`` (recursively)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputUnreadable("imaging folder not found", str(folder))
    out: dict[str, Path] = {}
    for path in sorted(folder.rglob(f"*{IMAGING_SUFFIX}")):
        pid = path.name[: -len(IMAGING_SUFFIX)].upper()
        if pid in out:
            raise InputUnreadable(f"two imaging files for {pid}: {out[pid]} and {path}", str(folder))
        out[pid] = path
    return out


def _read_imaging(path: Path, columns: Sequence[str], formats: Mapping[str, str]) -> dict[str, Any]:
    from etl.tables import format_list

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputUnreadable(f"not a readable imaging JSON: {exc}", str(path)) from exc
    if not isinstance(data, dict):
        raise InputUnreadable("imaging JSON must be an object of column -> value", str(path))
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in columns or key in MANIFEST_OWNED:
            continue
        fmt = formats.get(key)
        if isinstance(value, list) and fmt in ("list_float", "list_int"):
            value = format_list(value, fmt)
        out[key] = value
    return out


def build_table(
    cases: Sequence[Case],
    sources: Mapping[str, str | os.PathLike[str]] | None = None,
    base: str | os.PathLike[str] | None = None,
    imaging: str | os.PathLike[str] | None = None,
    mappings: Mapping[str, CollectionMapping] | None = None,
    normalizer: Normalizer | None = None,
) -> BuildResult:
    """Build (and validate) the table for ``cases``; raises ``ValidationFailed`` if it breaks the schema."""
    from etl.tables import read_table
    from etl.validate.schema import coerce_frame, load_schema, validate_frame

    schema = load_schema()
    columns = schema.column_names()
    formats = schema.formats()
    mappings = load_collections() if mappings is None else mappings
    check_targets(mappings.values(), columns)
    normalizer = Normalizer.load() if normalizer is None else normalizer
    source_paths = resolve_sources(sources or {}, mappings)

    ids = [c.patient_id for c in cases]
    if len(set(ids)) != len(ids):
        raise ValidationFailed("the manifest lists a patient twice", "manifest")
    datasets = [c.dataset for c in cases]
    order = list(dict.fromkeys(datasets))
    rows_of = {ds: [i for i, d in enumerate(datasets) if d == ds] for ds in order}
    cells: dict[str, list[Any]] = {c: [None] * len(cases) for c in columns}
    cells["patient_id"] = list(ids)
    cells["dataset"] = list(datasets)
    cells["tcia_series_uid"] = [c.tcia_series_uid or None for c in cases]
    lineage_vars: dict[str, dict[str, Any]] = {c: {} for c in columns}
    inputs: dict[str, Any] = {}

    # previous release, normalized
    base_rows: dict[str, dict[str, Any]] = {}
    normalizations: list[dict[str, Any]] = []
    base_label = None
    if base is not None:
        base = Path(base)
        base_label = f"base:{base.name}"
        base_df, normalizations = normalizer.apply(read_table(base))  # read first: a missing file is a clear error
        inputs["base"] = {"file": base.name, "sha256": sha256_file(base)}
        if "patient_id" not in base_df.columns:
            raise InputUnreadable("base table has no patient_id column", str(base))
        dup = base_df["patient_id"].dropna().duplicated()
        if dup.any():
            first = base_df["patient_id"].dropna()[dup].iloc[0]
            rows = [i + 2 for i in base_df.index[base_df["patient_id"] == first]]  # spreadsheet rows (header = 1)
            raise ValidationFailed(f"patient_id {first!r} appears twice in the base table (rows {rows[0]} and {rows[1]})", str(base))
        keep = [c for c in columns if c in base_df.columns and c not in ("patient_id", "dataset")]
        for rec in base_df[["patient_id", *keep]].to_dict("records"):
            base_rows[str(rec.pop("patient_id"))] = rec
        missing = sum(1 for p in ids if p not in base_rows)
        log.info("base %s: %d rows, %d manifest case(s) not in it", base.name, len(base_df), missing)

    # imaging JSON from convert
    imaging_rows: dict[str, dict[str, Any]] = {}
    imaging_label = None
    if imaging is not None:
        folder = Path(imaging)
        files = find_imaging_files(folder)
        imaging_label = f"imaging:{folder.name}"
        for pid in ids:
            if pid in files:
                imaging_rows[pid] = _read_imaging(files[pid], columns, formats)
        inputs["imaging"] = {"folder": folder.name, "files": len(imaging_rows)}
        log.info("imaging %s: %d of %d cases have a JSON", folder, len(imaging_rows), len(ids))

    # source spreadsheets
    mapped: dict[str, dict[str, Any]] = {}
    inputs["sources"] = {}
    for ds, path in source_paths.items():
        if ds not in rows_of:
            log.info("source for %s given but the manifest has no %s case", ds, ds)
            continue
        m = mappings[ds]
        data = read_source(m, path)
        result = apply_mapping(m, data, [ids[i] for i in rows_of[ds]])
        mapped[ds] = {"values": result.values, "lineage": result.lineage}
        inputs["sources"][ds] = {"file": path.name, "sha256": sha256_file(path), "mapping": m.path.name}
        log.info("%s: %d variables from %s", ds, len(result.values), path.name)

    for ds, rows in rows_of.items():
        for col in columns:
            if col in MANIFEST_OWNED:
                n = sum(cells[col][i] is not None for i in rows)
                lineage_vars[col][ds] = {"values": n, "from": [{"source": "manifest", "rule": "manifest column", "values": n}] if n else []}
                continue
            if ds in mapped and col in mapped[ds]["values"]:
                vals = mapped[ds]["values"][col]
                for i, v in zip(rows, vals):
                    cells[col][i] = v
                info = dict(mapped[ds]["lineage"][col])
                lineage_vars[col][ds] = {"values": info["values"], "from": [info]}
                continue
            n_base = n_img = 0
            for i in rows:
                pid = ids[i]
                v = base_rows.get(pid, {}).get(col)
                if v is not None and not pd.isna(v):
                    cells[col][i] = v
                    n_base += 1
                    continue
                v = imaging_rows.get(pid, {}).get(col)
                if v is not None:
                    cells[col][i] = v
                    n_img += 1
            origin = []
            if n_base:
                origin.append({"source": base_label, "rule": "carried forward (normalized)", "values": n_base})
            if n_img:
                origin.append({"source": imaging_label, "rule": "imaging JSON", "values": n_img})
            lineage_vars[col][ds] = {"values": n_base + n_img, "from": origin}

    frame = pd.DataFrame({c: pd.Series(cells[c], dtype=object) for c in columns})
    table = coerce_frame(frame)
    report = validate_frame(table)
    if report.errors:
        first = report.errors[:3]
        more = f" (and {len(report.errors) - 3} more)" if len(report.errors) > 3 else ""
        raise ValidationFailed(
            "built table breaks the schema: " + "; ".join(v.describe() for v in first) + more,
            "clinical build",
        )
    if report.warnings:
        log.info("built table: %d warning(s) %s", len(report.warnings), report.counts()["warning"])
    lineage = {
        "rows": len(table),
        "collections": {ds: len(r) for ds, r in rows_of.items()},
        "inputs": inputs,
        "normalizations": normalizations,
        "variables": lineage_vars,
    }
    return BuildResult(table, lineage, normalizations)


def cases_from_manifest(
    manifest: str | os.PathLike[str] | None, exclusions: str | os.PathLike[str] | None = None
) -> tuple[list[Case], dict[str, str], Path]:
    """Manifest cases minus exclusions (shipped list plus ``exclusions``), in manifest order."""
    from etl.caselist import cases_to_fetch
    from etl.resources import data_path

    path = Path(manifest) if manifest is not None else data_path("manifests/mama-mia-v1.csv")
    keep, skipped = cases_to_fetch(path, exclusions)
    return [Case(c.patient_id, c.dataset, c.tcia_series_uid) for c in keep], skipped, path
