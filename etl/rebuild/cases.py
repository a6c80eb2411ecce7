"""How many cases a stage is for and how many it has done, counted from what is on disk.

Counted, not parsed from the commands' output: a count read off the outputs is right after a killed run, a
resumed run and a skipped stage alike. Each stage's ``cases:`` entry in ``stages.yaml`` names the counters.
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path
from typing import Any

from etl.layout import Layout
from etl.rebuild.plan import Unset, fill
from etl.rebuild.spec import RebuildSpec

log = logging.getLogger("etl.rebuild")


def manifest_cases(spec: RebuildSpec) -> list[Any]:
    """The manifest's cases minus the shipped and declared exclusions (what every per-case stage is for)."""
    from etl.caselist import read_exclusions, read_manifest

    v = spec.variables
    excluded = read_exclusions(v["exclusions"], shipped=True)
    return [c for c in read_manifest(v["manifest"]) if c.patient_id not in excluded]


def _rows(path: Path) -> int | None:
    if not path.is_file():
        return None
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with open(path, encoding="utf-8") as fh:
        return max(0, sum(1 for line in fh if line.strip()) - 1)


def _tcia_cached(spec: RebuildSpec) -> int | None:
    from etl.extract.cache import Cache
    from etl.extract.tcia import manifest_series

    root = Path(spec.variables["cache_tcia"])
    if not (root / "ledger.sqlite").is_file():
        return None
    cache = Cache(root, create=False, readonly=True)
    try:
        return sum(1 for case in manifest_cases(spec) if manifest_series(cache, case))
    finally:
        cache.close()


def _dirs(path: Path) -> int:
    if not path.is_dir():
        return 0
    return sum(1 for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and "." not in p.name)


def expected(kind: str | None, spec: RebuildSpec) -> int | None:
    """The number of cases a stage is for: the manifest's, the staged image folders' or the table's rows."""
    v = spec.variables
    if kind == "manifest":
        return len(manifest_cases(spec))
    if kind == "images":
        images = Layout.from_definition(v["staged"], v["definition"]).folder("image")
        return _dirs(images) if images.is_dir() else None
    if kind == "table":
        return _rows(Path(v["table"]))
    return None


def done(rule: Any, spec: RebuildSpec) -> int | None:
    """Cases a stage has finished, by the rule of its ``cases.done`` entry."""
    if rule is None:
        return None
    if rule == "tcia_cached":
        return _tcia_cached(spec)
    if not isinstance(rule, dict) or len(rule) != 1:
        raise ValueError(f"bad cases.done rule in stages.yaml: {rule!r}")
    (how, template), = rule.items()
    try:
        target = fill(template, spec.variables)
    except Unset:
        return None
    if how == "files":
        return sum(1 for p in glob.glob(target) if not Path(p).name.startswith("."))
    if how == "dirs":
        return _dirs(Path(target))
    if how == "rows":
        return _rows(Path(target))
    raise ValueError(f"bad cases.done rule in stages.yaml: {rule!r}")


def count(cases: dict[str, Any], spec: RebuildSpec) -> dict[str, int | None]:
    """{expected, done} for a stage; a count that cannot be read is None, never a guess."""
    try:
        return {"expected": expected(cases.get("expected"), spec), "done": done(cases.get("done"), spec)}
    except Exception as exc:  # a count is informational: an unreadable output must not hide the stage's own status
        log.warning("cannot count cases: %s", exc)
        return {"expected": None, "done": None}
