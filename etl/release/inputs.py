"""Step 1 of ``release build``, the inputs: the table rows to release, each case's staged files, the split.

Reads only what the definition declares: the table (minus exclusions), the staged directories (first directory
that has phase 0000 wins; masks, imaging JSON and patient info are looked up in every staged directory, in
order), staged imaging JSON values that replace the table's imaging columns, and the split. Refuses (every
problem listed) before anything is written: a case whose phase count differs from ``num_phases``, a table
that breaks the schema, a collection the definition does not describe.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from etl.contracts import QC, TABLE
from etl.errors import ConfigError, InputUnreadable, ValidationFailed
from etl.layout import Layout
from etl.release.definition import ReleaseDefinition, check_collections
from etl.split import SplitResult

log = logging.getLogger("etl.release.build")

MAX_LISTED = 20


@dataclass
class StagedCase:
    patient_id: str
    images: list[Path]
    expert: Path | None
    automatic: Path | None
    imaging_json: Path | None
    root: Path
    patient_info: Path | None = None


@dataclass
class ReleaseInputs:
    """What the build releases: the table rows (sorted, with ``split``), their staged files and the split."""

    table: pd.DataFrame
    cases: dict[str, StagedCase]
    split: SplitResult
    excluded: dict[str, str] = field(default_factory=dict)   # patient_id -> reason
    dropped: list[str] = field(default_factory=list)          # table rows without staged images (cases: staged)
    unlisted: list[str] = field(default_factory=list)         # staged case folders without a table row
    overrides: dict[str, int] = field(default_factory=dict)   # imaging cells replaced from staged JSON, per column
    staged_qc: Path | None = None                             # a segment stage's QC table, carried over

    @property
    def ids(self) -> set[str]:
        return set(self.table["patient_id"].astype(str))


def read_inputs(defn: ReleaseDefinition) -> ReleaseInputs:
    """The table rows to release with their staged files and split (see the module docstring)."""
    from etl.release.tableio import read_table

    if defn.table is None:
        raise ConfigError("no table given (sources.table or --table)", str(defn.path))
    for root in defn.staged:
        if not root.is_dir():
            raise InputUnreadable("staged directory not found", str(root))
    if defn.previous is not None and not (defn.previous / TABLE).exists():
        raise InputUnreadable(f"previous release not found (no {TABLE})", str(defn.previous))

    df = read_table(defn.table)
    for col in ("patient_id", "dataset", "num_phases"):
        if col not in df.columns:
            raise ValidationFailed(f"table lacks column {col}", str(defn.table))
    df = df.drop(columns=[c for c in ("split",) if c in df.columns])
    df["patient_id"] = df["patient_id"].astype("string").str.strip()
    df, excluded = apply_exclusions(df, defn)
    df = df.sort_values("patient_id", kind="mergesort").reset_index(drop=True)

    layouts = [defn.layout(root) for root in defn.staged]
    cases: dict[str, StagedCase] = {}
    for pid in df["patient_id"].astype(str):
        found = find_case(pid, layouts)
        if found is not None:
            cases[pid] = found
    unlisted = staged_not_in_table(layouts, set(df["patient_id"].astype(str)))
    if unlisted:
        log.warning("%d staged case folder(s) have no table row and are not released (first: %s)", len(unlisted), unlisted[0])
    dropped: list[str] = []
    if defn.cases == "staged":
        dropped = [pid for pid in df["patient_id"].astype(str) if pid not in cases]
        df = df[df["patient_id"].isin(list(cases))].reset_index(drop=True)
        if dropped:
            log.info("cases: staged -> %d table row(s) without staged images left out (first: %s)", len(dropped), dropped[0])
    if df.empty:
        raise ValidationFailed("no case to release (no table row has staged images)", str(defn.staged[0]))
    check_collections(defn, sorted(str(d) for d in df["dataset"].dropna().unique()))
    overrides: dict[str, int] = {}
    if defn.imaging_from_staged:
        df, overrides = apply_imaging_json(df, cases)
    check_cases(df, cases)
    check_schema(df, defn.table)

    result = draw_split(defn, df)
    split_of = dict(zip(result.assignments["patient_id"], result.assignments["split"]))
    df["split"] = pd.array([split_of[p] for p in df["patient_id"].astype(str)], dtype="string")
    staged_qc = next((r / QC for r in defn.staged if (r / QC).exists()), None)
    return ReleaseInputs(df, cases, result, excluded, dropped, unlisted, overrides, staged_qc)


def draw_split(defn: ReleaseDefinition, df: pd.DataFrame) -> SplitResult:
    """The definition's split (a published split file reproduced, else a stratified draw)."""
    from etl.split import fixed_split, make_split

    try:
        return fixed_split(df, defn.split_file, defn.split) if defn.split_file else make_split(df, defn.split)
    except ValidationFailed as exc:
        if not (exc.where or "").startswith("split."):
            raise
        raise ValidationFailed(exc.what.replace("(--folds)", "(split.folds)"), f"{defn.path}: {exc.where}") from exc


def find_case(pid: str, layouts: list[Layout]) -> StagedCase | None:
    images: list[Path] = []
    root = None
    for lay in layouts:
        found = lay.images(pid)
        if found:
            images, root = found, lay.root
            break
    if root is None:
        return None

    def first(getter: str) -> Path | None:
        for lay in layouts:
            p = getattr(lay, getter)(pid)
            if p.exists():
                return p
        return None

    return StagedCase(pid, images, first("expert_mask"), first("automatic_mask"), first("imaging_json"), root,
                      first("patient_info"))


def staged_not_in_table(layouts: list[Layout], ids: set[str]) -> list[str]:
    """Case folders of the image template (``images/{PATIENT_ID}``) that no table row names."""
    found: set[str] = set()
    for lay in layouts:
        folder = lay.image("X", 0).parent.parent  # the directory holding one folder per case
        if folder.is_dir() and "{PATIENT_ID}" in lay.templates["image"]:
            found |= {p.name for p in folder.iterdir() if p.is_dir()}
    return sorted(found - ids)


def apply_imaging_json(df: pd.DataFrame, cases: dict[str, StagedCase]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Staged imaging values win over the table's; returns the frame and changed-cell counts per column."""
    from etl.release.diff import same_value
    from etl.release.tableio import coerce
    from etl.tables import format_list
    from etl.transform.table import MANIFEST_OWNED  # ids come from the manifest, never from a converter
    from etl.contracts import imaging_variables
    from etl.validate.schema import load_schema

    formats = load_schema().formats()
    imaging = set(imaging_variables())
    out = df.copy()
    for col in imaging:
        if col in out.columns:
            out[col] = out[col].astype(object)
    changed: dict[str, int] = {}
    pos = {pid: i for i, pid in enumerate(out["patient_id"].astype(str))}
    for pid, case in sorted(cases.items()):
        if case.imaging_json is None:
            continue
        try:
            values = json.loads(case.imaging_json.read_text())
        except (OSError, ValueError) as exc:
            raise InputUnreadable(f"imaging JSON unreadable: {exc}", str(case.imaging_json)) from exc
        if not isinstance(values, dict):
            raise InputUnreadable("imaging JSON must be an object", str(case.imaging_json))
        for col, value in sorted(values.items()):
            if col not in imaging or col in MANIFEST_OWNED or col not in out.columns or value is None:
                continue
            if isinstance(value, list) and col in formats:
                value = format_list(value, formats[col])
            i = pos[pid]
            old = out.at[i, col]
            if not same_value(old, value) and not same_value(str(old), str(value)):
                changed[col] = changed.get(col, 0) + 1
            out.at[i, col] = value
    return coerce(out), dict(sorted(changed.items()))


def check_cases(df: pd.DataFrame, cases: dict[str, StagedCase]) -> None:
    problems = []
    for pid, n in zip(df["patient_id"].astype(str), df["num_phases"]):
        case = cases.get(pid)
        if case is None:
            problems.append((pid, "no staged images"))
        elif n is pd.NA or pd.isna(n):
            problems.append((pid, f"num_phases missing ({len(case.images)} phase files staged)"))
        elif len(case.images) != int(n):
            problems.append((pid, f"{len(case.images)} phase file(s) staged but num_phases is {int(n)}"))
    if problems:
        listed = "; ".join(f"{pid}: {why}" for pid, why in problems[:MAX_LISTED])
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        for pid, why in problems:
            log.error("%s: %s", pid, why)
        hint = ("; use `cases: staged` (or --only-staged) to release only staged cases"
                if any(why == "no staged images" for _, why in problems) else "")
        raise ValidationFailed(f"{len(problems)} case(s) cannot be released: {listed}{more}{hint}", problems[0][0])


def check_schema(df: pd.DataFrame, table: Path) -> None:
    """Schema errors stop the build before anything is copied (verify would reject the release anyway)."""
    from etl.release.tableio import validate

    errors = validate(df).errors
    if errors:
        for v in errors:
            log.error("%s", v.describe())
        first = errors[0]
        raise ValidationFailed(f"table breaks the schema: {len(errors)} error(s), first: {first.message} "
                               f"(value {first.value!r})", f"{table}: row {first.row}, column {first.column}")


def apply_exclusions(df: pd.DataFrame, defn: ReleaseDefinition) -> tuple[pd.DataFrame, dict[str, str]]:
    """Drop excluded cases (shipped manifests/exclusions.csv + the definition's ``sources.exclusions``).

    The release is the last gate: a case excluded after its table was built must still never ship."""
    from etl.caselist import read_exclusions

    excluded = read_exclusions(defn.exclusions)
    hit = {pid: excluded[pid] for pid in df["patient_id"].astype(str) if pid in excluded}
    for pid, reason in sorted(hit.items()):
        log.info("excluded %s: %s", pid, reason)
    return df[~df["patient_id"].isin(list(hit))].reset_index(drop=True), dict(sorted(hit.items()))
