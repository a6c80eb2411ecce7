"""Materialize cached downloads as ordinary folders for the next stage.

TCIA: ``<out>/<patient_id>/<SeriesInstanceUID>/<file>.dcm`` per manifest case (``patient_id`` is the
release id, e.g. ``DUKE_001``), which is what ``mamamia convert <out>/<patient_id> ...`` reads. Synapse:
``<out>/<relative path>`` exactly as in the project tree. Each case folder is built beside its target and
renamed into place, so an interrupted export never leaves a half-filled case. Files are copied by default;
``link=True`` hard-links them (no extra space; the cache objects are read-only, so treat them as such).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from etl.atomic import atomic_dir, atomic_path
from etl.extract.cache import Cache, SynapseRecord
from etl.caselist import cases_to_fetch
from etl.extract.zipcheck import safe_member_name
from etl.types import StrPath

log = logging.getLogger("etl.extract.export")


@dataclass
class ExportResult:
    out: Path
    cases: dict[str, int] = field(default_factory=dict)  # patient_id (or relpath) -> files written
    missing: dict[str, str] = field(default_factory=dict)  # patient_id -> why nothing was exported
    excluded: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)  # --keep-existing: files left as they are (they differ)
    unchanged: int = 0  # files already there with the cached bytes
    files: int = 0
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.missing


def _place(cache: Cache, sha256: str, target: Path, link: bool) -> None:
    src = cache.object_path(sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, target)
            return
        except OSError:
            log.debug("hard link failed for %s, copying instead", target)
    shutil.copyfile(src, target)
    os.chmod(target, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)


def export_tcia(
    cache_dir: StrPath,
    manifest: StrPath,
    out: StrPath,
    series_only: bool = False,
    exclusions: StrPath | None = None,
    shipped_exclusions: bool = True,
    link: bool = False,
) -> ExportResult:
    """Write each manifest case's cached DICOM series under ``out/<patient_id>/<SeriesInstanceUID>/``."""
    from etl.extract.tcia import manifest_series

    cache = Cache(cache_dir, create=False, readonly=True)
    cases, excluded = cases_to_fetch(manifest, exclusions, shipped_exclusions)
    res = ExportResult(Path(out), excluded=excluded)
    res.out.mkdir(parents=True, exist_ok=True)
    for case in cases:
        series = manifest_series(cache, case, series_only)
        if not series:
            res.missing[case.patient_id] = (
                f"no complete series in the cache for {case.tcia_collection} / {case.tcia_patient_id}"
                + (f" (series {case.tcia_series_uid})" if series_only else "")
            )
            continue
        n = 0
        with atomic_dir(res.out / case.patient_id) as tmp:
            for rec in series:
                for f in cache.series_files(rec.series_uid):
                    rel = safe_member_name(f.name)
                    if rel is None:  # refused at download time already; never trust the ledger blindly
                        raise ValueError(f"unsafe file name in ledger: {f.name!r}")
                    _place(cache, f.sha256, tmp / rec.series_uid / rel, link)
                    n += 1
                    res.bytes += f.size
        res.cases[case.patient_id] = n
        res.files += n
    return res


def export_synapse(
    cache_dir: StrPath,
    out: StrPath,
    root_id: str | None = None,
    include: list[str] | None = None,
    link: bool = False,
    keep_existing: bool = False,
) -> ExportResult:
    """Write the cached Synapse files under ``out`` at their relative paths in the project tree.

    A file already there with the cached bytes is left alone. With ``keep_existing`` a file there with OTHER
    bytes is kept too (and listed in ``kept``): staging the published expert masks into a staged directory must
    never replace a mask a curator imported since (`review import`), even when a rebuild reruns the export."""
    cache = Cache(cache_dir, create=False, readonly=True)
    res = ExportResult(Path(out))
    recs = cache.synapse_files(root_id)
    latest: dict[tuple[str, str], SynapseRecord] = {}
    for r in recs:  # one file per path: the highest version
        key = (r.root_id, r.relpath)
        if key not in latest or r.version > latest[key].version:
            latest[key] = r
    for (_root, rel), r in sorted(latest.items()):
        if include and not any(fnmatch.fnmatch(rel, g) for g in include):
            continue
        safe = safe_member_name(rel)
        if safe is None:
            raise ValueError(f"unsafe relative path in ledger: {rel!r}")
        if not cache.has_object(r.sha256):
            res.missing[rel] = "object missing from the cache (run `mamamia cache verify`)"
            continue
        target = res.out / safe
        if target.is_file():
            from etl.hashing import sha256_file

            if sha256_file(target) == r.sha256:
                res.unchanged += 1
                continue
            if keep_existing:
                res.kept.append(rel)
                continue
        with atomic_path(res.out / safe) as tmp:
            tmp.unlink()
            _place(cache, r.sha256, tmp, link)
        res.cases[rel] = 1
        res.files += 1
        res.bytes += r.size
    return res
