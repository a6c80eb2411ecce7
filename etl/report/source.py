"""What a report is made from: a release directory, a staged directory (+ its table) or a table file alone.

Why one loader: every section reads the same frame, so the cohort tables are computed from exactly the
frame `mamamia summary` reads for the same path (a release: its typed table without the release extras; a
table file: ``etl.tables.read_table``), and sections that need files (splits, QC, ratings, images) find
them in one place or are left out with the reason said. Nothing here records the input's absolute path:
a report written inside ``release build`` (in ``<out>.partial/``) must not depend on where it was built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from etl.contracts import CORRECTIONS, QC, RATINGS, SPLITS, TABLE, TABLE_CSV, TABLE_XLSX
from etl.errors import ConfigError, EtlError, InputUnreadable
from etl.layout import Layout
from etl.types import StrPath

TABLE_NAMES = (TABLE, TABLE_XLSX, TABLE_CSV)
TABLE_SUFFIXES = (".parquet", ".xlsx", ".csv")
# optional release files the Segmentations section reads (ARCHITECTURE.md, "Release directory"): QC, RATINGS
# at the top, corrections in the layout's segmentations folder (ReportSource.corrections)


@dataclass
class ReportSource:
    """One input, loaded: the frame the summary uses plus whatever files the input has."""

    kind: str                      # "release", "staged" or "table"
    name: str                      # what the report calls it (release id, folder or file name)
    table: pd.DataFrame            # the frame `mamamia summary` reads for this input
    table_name: str                # file name of the table inside the input
    table_sha256: str
    raw: pd.DataFrame | None = None          # the table as the file holds it (for validation of table files)
    root: Path | None = None                 # release or staged directory
    layout: Layout | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    splits: pd.DataFrame | None = None       # patient_id, split, fold
    coerce_error: str | None = None          # why the table could not be typed (charts left out)

    def file(self, rel: str) -> Path | None:
        """An optional file of the input directory, if present."""
        if self.root is None:
            return None
        p = self.root / rel
        return p if p.is_file() else None

    def corrections(self) -> tuple[str, Path | None]:
        """The expert corrections table (root-relative name, path if present) from the input's layout."""
        if self.root is None or self.layout is None:
            return CORRECTIONS, None
        p = self.layout.corrections()
        return p.relative_to(self.layout.root).as_posix(), (p if p.is_file() else None)


def load_source(path: StrPath, table: StrPath | None = None) -> ReportSource:
    """Open ``path`` as a release directory, a staged directory (table inside it or ``table``) or a table file."""
    from etl.use.release import is_release

    path = Path(path)
    if not path.exists():
        raise InputUnreadable("input not found", str(path))
    if path.is_dir():
        if is_release(path) and table is None:
            return _release(path)
        return _staged(path, Path(table) if table else None)
    if table is not None:
        raise ConfigError("--table is only for a staged directory (the input is already a table)", str(table))
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise InputUnreadable(f"not a table ({', '.join(TABLE_SUFFIXES)}) nor a release or staged directory", str(path))
    return _table(path)


def _sha256(path: Path) -> str:
    from etl.hashing import sha256_file

    return sha256_file(path)


def _release(root: Path) -> ReportSource:
    from etl.release.tableio import base_frame
    from etl.split import read_split
    from etl.use.release import open_release

    rel = open_release(root)
    prov = rel.provenance
    info = prov.get("release") or {}
    name = f"{info['name']}-{info['version']}" if info.get("name") and info.get("version") else root.name
    splits = read_split(root / SPLITS) if (root / SPLITS).is_file() else None
    return ReportSource("release", name, base_frame(rel.table), TABLE_NAMES[0], _sha256(root / TABLE_NAMES[0]),
                        root=rel.root, layout=rel.layout, provenance=prov, splits=splits)


def _staged(root: Path, table: Path | None) -> ReportSource:
    if table is None:
        table = next((root / n for n in TABLE_NAMES if (root / n).is_file()), None)
    if table is None:
        raise ConfigError("directory is neither a release nor a staged directory with a table "
                          f"({' / '.join(TABLE_NAMES)}); pass the table with --table", str(root))
    src = _table(table)
    src.kind, src.name, src.root = "staged", root.resolve().name, root
    src.layout = Layout.from_definition(root)
    if "split" in src.table.columns:
        src.splits = _splits_from_columns(src.table)
    return src


def _table(path: Path) -> ReportSource:
    from etl.tables import read_table
    from etl.validate.schema import coerce_frame

    raw = read_table(path, raw=True)
    coerce_error = None
    try:
        typed = coerce_frame(raw)
    except EtlError as exc:  # the Validation section still lists every finding; charts need typed values
        typed, coerce_error = raw, exc.message
    src = ReportSource("table", path.name, typed, path.name, _sha256(path), raw=raw, coerce_error=coerce_error)
    if "split" in typed.columns:
        src.splits = _splits_from_columns(typed)
    return src


def _splits_from_columns(df: pd.DataFrame) -> pd.DataFrame | None:
    cols = [c for c in ("patient_id", "split", "fold") if c in df.columns]
    if "split" not in cols or df["split"].isna().all():
        return None
    out = df[cols].copy()
    if "fold" not in out.columns:
        out["fold"] = pd.array([pd.NA] * len(out), dtype="Int64")
    out["fold"] = pd.to_numeric(out["fold"], errors="coerce").astype("Int64")
    return out
