"""The release's case list: the manifest minus the exclusions, shared by every stage.

Extraction downloads these cases, conversion and the clinical build skip the excluded ones, the rebuild
plans them and the release build is the last gate (an excluded case never ships). The list lives here, below
every stage, so no stage climbs into another one to learn which cases exist.

Manifest (``manifests/mama-mia-v1.csv``): ``patient_id, dataset, tcia_collection, tcia_patient_id,
tcia_series_uid`` (one row per case; the series UID names the case's reference series). Exclusions
(``manifests/exclusions.csv`` shipped with the package, plus any ``--exclusions`` file): ``patient_id,
reason``. An excluded case is skipped and logged, never silently dropped.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from etl.errors import InputUnreadable
from etl.resources import data_path
from etl.types import StrPath

log = logging.getLogger("etl.caselist")

MANIFEST_COLUMNS = ("patient_id", "dataset", "tcia_collection", "tcia_patient_id", "tcia_series_uid")
EXCLUSION_COLUMNS = ("patient_id", "reason")


@dataclass(frozen=True)
class ManifestCase:
    patient_id: str  # release id, e.g. DUKE_001
    dataset: str
    tcia_collection: str
    tcia_patient_id: str
    tcia_series_uid: str  # may be "" when the manifest does not pin a series


def _read_csv(path: Path, required: tuple[str, ...], what: str) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise InputUnreadable(f"{what} lacks column(s) {', '.join(missing)}", str(path))
            rows = []
            for row in reader:
                clean = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                if any(clean.values()):
                    rows.append(clean)
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputUnreadable(f"cannot read {what}: {exc}", str(path)) from exc


def read_manifest(path: StrPath) -> list[ManifestCase]:
    """Manifest rows in file order; every row must name a patient, collection and TCIA patient."""
    path = Path(path)
    cases: list[ManifestCase] = []
    seen: set[str] = set()
    for n, row in enumerate(_read_csv(path, MANIFEST_COLUMNS, "manifest"), start=2):
        for col in ("patient_id", "tcia_collection", "tcia_patient_id"):
            if not row[col]:
                raise InputUnreadable(f"empty {col}", f"{path} row {n}")
        if row["patient_id"] in seen:
            raise InputUnreadable(f"duplicate patient_id {row['patient_id']}", f"{path} row {n}")
        seen.add(row["patient_id"])
        cases.append(ManifestCase(*(row[c] for c in MANIFEST_COLUMNS)))
    return cases


def shipped_exclusions_path() -> Path | None:
    """``manifests/exclusions.csv`` from the installed package, or None if it is not shipped (yet)."""
    try:
        return data_path("manifests/exclusions.csv")
    except FileNotFoundError:
        return None


def read_exclusions(extra: StrPath | None = None, shipped: bool = True) -> dict[str, str]:
    """patient_id -> reason from the shipped list and ``extra``; a missing shipped list counts as empty."""
    out: dict[str, str] = {}
    paths: list[Path] = []
    if shipped and (p := shipped_exclusions_path()) is not None:
        paths.append(p)
    if extra is not None:
        paths.append(Path(extra))
    for p in paths:
        for row in _read_csv(p, EXCLUSION_COLUMNS, "exclusions"):
            if row["patient_id"]:
                out[row["patient_id"]] = row["reason"] or "(no reason given)"
    return out


def cases_to_fetch(
    manifest: StrPath,
    exclusions: StrPath | None = None,
    shipped_exclusions: bool = True,
) -> tuple[list[ManifestCase], dict[str, str]]:
    """(cases to download, {excluded patient_id: reason}); each exclusion is logged."""
    cases = read_manifest(manifest)
    excluded = read_exclusions(exclusions, shipped=shipped_exclusions)
    keep = []
    skipped: dict[str, str] = {}
    for case in cases:
        if case.patient_id in excluded:
            skipped[case.patient_id] = excluded[case.patient_id]
            log.info("skipping %s: excluded (%s)", case.patient_id, excluded[case.patient_id])
        else:
            keep.append(case)
    for pid in sorted(set(excluded) - {c.patient_id for c in cases}):
        log.warning("exclusion %s matches no manifest case (typo?)", pid)
    return keep, skipped
