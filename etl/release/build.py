"""`release build`: staged directories + harmonized table -> a versioned, checksummed release directory.

The build is five named steps, each in a module of its own, run inside ``<out>.partial/`` which is renamed
into place only once the release verifies:

1. inputs (``inputs.py``): the table rows to release (minus exclusions; ``cases: table`` = all rows, each must
   have images; ``cases: staged`` = rows whose images are staged), each case's staged files, staged imaging
   values, the checks that stop a build before anything is written, and the split;
2. case files (``casefiles.py``): NIfTIs copied byte for byte, per-case patient info, per-case QC rows (one
   job per case through ``etl.runner``: ``--jobs N`` local processes or a ``--scheduler`` dask cluster);
3. tables (``tablefiles.py``): QC, review outputs, the typed table and its xlsx, the split CSV and JSON;
4. documents (``documents.py``): data dictionary, licences, Croissant, provenance, changelog, data card;
5. checksums (``manifest.seal``): SHA256SUMS last; then verify the partial directory.
Nothing in the content depends on the wall clock or on file-system order, so the same inputs give
byte-identical files.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from etl.contracts import MANIFEST, PROVENANCE
from etl.errors import ConfigError, ValidationFailed
from etl.release.casefiles import write_case_files
from etl.release.definition import ReleaseDefinition
from etl.release.documents import write_documents
from etl.release.inputs import read_inputs
from etl.release.manifest import seal
from etl.release.tablefiles import write_tables
from etl.types import StrPath

log = logging.getLogger("etl.release.build")


@dataclass
class BuildResult:
    path: Path
    cases: int
    images: int
    expert_masks: int
    automatic_masks: int
    size_bytes: int
    files: int
    dropped: list[str] = field(default_factory=list)
    imaging_overrides: dict[str, int] = field(default_factory=dict)
    merged_strata: dict[str, str] = field(default_factory=dict)


def build_release(defn: ReleaseDefinition, out: StrPath, *, link: bool = False, verify: bool = True,
                  report: bool = False, jobs: int = 1, scheduler: str | None = None) -> BuildResult:
    """Build the release ``out`` from a definition (see the module docstring for the steps).

    ``jobs`` / ``scheduler``: where the case files are copied and hashed (``etl.runner``: in this process, a
    local pool of ``jobs`` processes, or a dask.distributed cluster); the release's bytes are the same."""
    from etl.atomic import atomic_dir

    out = Path(out).resolve()
    check_out(out, defn)
    inp = read_inputs(defn)
    with atomic_dir(out) as tmp:
        files = write_case_files(defn, inp, tmp, link, jobs, scheduler)
        review = write_tables(defn, inp, files, tmp)
        write_documents(defn, inp, files, review, tmp, out, report=report, verified=verify)
        final = seal(tmp, files.known)
        if verify:
            verify_built(tmp, defn)
    size = sum((out / rel).stat().st_size for rel in final) + (out / MANIFEST).stat().st_size
    return BuildResult(out, len(inp.table), files.images, files.expert_masks, files.automatic_masks, size,
                       len(final) + 1, inp.dropped, inp.overrides, inp.split.merges)


def verify_built(tmp: Path, defn: ReleaseDefinition) -> None:
    """The partial directory must verify (checksums were just written) before it replaces ``--out``."""
    from etl.release.verify import verify_release

    problems = verify_release(tmp, checksums=False, roots=(defn.path.parent, *defn.staged))
    if problems:
        for p in problems:
            log.error("%s", p.describe())
        raise ValidationFailed(f"built release does not verify: {len(problems)} problem(s), first: "
                               f"{problems[0].message}", problems[0].where)


def is_replaceable_release(path: Path) -> bool:
    """A directory ``release build`` wrote (SHA256SUMS and our provenance.json), so ``--out`` may replace it.

    Stricter than ``etl.use.release.is_release``, which only asks whether a folder can be opened as a release
    (it has the table); replacing a folder needs proof that this tool made it."""
    try:
        prov = json.loads((path / PROVENANCE).read_text())
    except (OSError, ValueError):
        return False
    return (path / MANIFEST).is_file() and isinstance(prov, dict) and (prov.get("tool") or {}).get("name") == "mamamia-etl"


def check_out(out: Path, defn: ReleaseDefinition) -> None:
    """``--out`` is replaced wholesale on success, so it must be new, empty or an earlier release (never a
    folder of other files, never one holding the build's own inputs)."""
    from etl.atomic import recover_previous

    recover_previous(out)  # a swap killed between its two renames: the previous release is put back first
    if out.exists() and not out.is_dir():
        raise ConfigError("--out names an existing file, not a release directory", str(out))
    if out.is_dir() and any(out.iterdir()) and not is_replaceable_release(out):
        raise ConfigError(f"--out is an existing folder that is not a release (no {MANIFEST} + {PROVENANCE} "
                          "written by mamamia); refusing to replace it, choose a new --out", str(out))
    for p in defn.staged:
        if p.is_relative_to(out):
            raise ConfigError(f"--out would replace the staged directory {p} the build reads", str(out))
