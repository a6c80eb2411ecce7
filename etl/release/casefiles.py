"""Step 2 of ``release build``, the case files: phases and masks copied byte for byte (or hard-linked),
``patient_info_files/<id>.json`` per case, and the per-case QC rows when no staged QC table is carried over.

Every copied file's sha256 is computed while copying (``known``), so the checksum step never re-reads an
image; the listing of what was read from each staged directory goes into provenance.

Each case is one ``CaseJob`` (plain paths and the table row) run by ``write_case`` through ``etl.runner``: in
this process for one job, on a local process pool for ``--jobs N``, on a dask.distributed cluster for
``--scheduler`` (whose workers must see the staged directories and ``--out`` at the same paths). The results
are merged in table row order, so the release is byte-identical however the cases ran; a case that fails
fails the build with its typed error, naming the patient and the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import nibabel as nib

import etl.segment.metrics  # noqa: F401  (imported by qc.case_row; see below)
from etl.errors import EtlError, InputUnreadable
from etl.hashing import sha256_file
from etl.release import patient_info, qc
from etl.release.definition import ReleaseDefinition
from etl.release.inputs import ReleaseInputs
from etl.runner import Outcome

# What ``write_case`` needs is imported here, at module level: a local pool's forkserver preloads this module,
# so every worker starts with nibabel and scipy (~0.5 s of imports) already loaded instead of importing them.

log = logging.getLogger("etl.release.build")

_CHUNK = 1 << 20


@dataclass
class CaseFiles:
    """What the case step wrote: digests by release-relative path, and what was read from each staged root."""

    known: dict[str, str] = field(default_factory=dict)
    staged_entries: dict[Path, list[tuple[str, str]]] = field(default_factory=dict)
    images: int = 0
    expert_masks: int = 0
    automatic_masks: int = 0
    info_merged: int = 0  # patient_info files merged from staged ones
    qc_rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class CaseFile:
    """One staged file of a case and where it goes: ``kind`` is image, expert or automatic."""

    kind: str
    src: str     # absolute path of the staged file
    dst: str     # release-relative path
    root: int    # the staged directory it was found in (index into the definition's staged list)
    listed: str  # its path relative to that directory (provenance's listing of what was read)


@dataclass(frozen=True)
class CaseJob:
    """Everything one case needs, picklable (plain strings and the table row as a dict): phases first, in
    phase order, then the expert and the automatic mask when staged."""

    patient_id: str
    row: dict[str, Any]
    files: tuple[CaseFile, ...]
    patient_info: str                    # release-relative path of patient_info_files/<id>.json
    staged_info: str | None              # a staged patient info JSON to merge, absolute
    target: str                          # the build's temporary directory (OUT.partial), absolute
    imaging_columns: tuple[str, ...]
    link: bool
    qc: bool                             # compute the QC row (no staged QC table is carried over)


@dataclass(frozen=True)
class CaseResult:
    """What ``write_case`` wrote: the sha256 of every file by release-relative path, in the job's order."""

    known: dict[str, str]
    qc_row: dict[str, Any] | None
    info_merged: bool


def write_case_files(defn: ReleaseDefinition, inp: ReleaseInputs, tmp: Path, link: bool, jobs: int = 1,
                     scheduler: str | None = None) -> CaseFiles:
    """Copy every case's images and masks into ``tmp`` and write its patient info (see the module docstring)."""
    from etl.progress import track
    from etl.runner import make_runner

    case_jobs = plan_cases(defn, inp, tmp, link)
    outcomes: list[Outcome] = []
    for out in track(make_runner(jobs, scheduler).map(write_case, case_jobs), "release: cases", total=len(case_jobs)):
        if not out.ok:
            log.error("%s: %s", case_jobs[out.index].patient_id,
                      out.message if out.traceback is None else f"{out.error_kind}: {out.message}")
            if out.traceback:
                log.error("%s", out.traceback)
        outcomes.append(out)
    outcomes.sort(key=lambda o: o.index)  # table row order, whatever order the cases finished in
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise case_error(case_jobs[failed[0].index].patient_id, failed[0], len(failed))
    return merge(defn, case_jobs, [cast(CaseResult, o.value) for o in outcomes])


def plan_cases(defn: ReleaseDefinition, inp: ReleaseInputs, tmp: Path, link: bool) -> list[CaseJob]:
    """One job per table row, in row order."""
    from etl.contracts import imaging_variables

    img_cols = tuple(imaging_variables())
    target = defn.layout(tmp)
    rows = cast(list[dict[str, Any]], inp.table.to_dict("records"))

    def staged_file(kind: str, src: Path, dst: Path, root: Path) -> CaseFile:
        return CaseFile(kind, str(src.absolute()), dst.relative_to(tmp).as_posix(), defn.staged.index(root),
                        src.relative_to(root).as_posix())

    out: list[CaseJob] = []
    for row in rows:
        pid = str(row["patient_id"])
        case = inp.cases[pid]
        files = [staged_file("image", src, target.image(pid, phase), case.root) for phase, src in enumerate(case.images)]
        for kind, src, dst in (("expert", case.expert, target.expert_mask(pid)),
                               ("automatic", case.automatic, target.automatic_mask(pid))):
            if src is not None:
                files.append(staged_file(kind, src, dst, next(r for r in defn.staged if src.is_relative_to(r))))
        out.append(CaseJob(pid, row, tuple(files), target.patient_info(pid).relative_to(tmp).as_posix(),
                           str(case.patient_info.absolute()) if case.patient_info is not None else None,
                           str(tmp.absolute()), img_cols, link, inp.staged_qc is None))
    return out


def merge(defn: ReleaseDefinition, case_jobs: list[CaseJob], results: list[CaseResult]) -> CaseFiles:
    """The cases' results, in row order, as one ``CaseFiles`` (with what was read from each staged root)."""
    files = CaseFiles(staged_entries={root: [] for root in defn.staged})
    for job, res in zip(case_jobs, results):
        for f in job.files:
            digest = res.known[f.dst]
            files.known[f.dst] = digest
            files.staged_entries[defn.staged[f.root]].append((f.listed, digest))
            files.images += f.kind == "image"
            files.expert_masks += f.kind == "expert"
            files.automatic_masks += f.kind == "automatic"
        files.info_merged += res.info_merged
        if res.qc_row is not None:
            files.qc_rows.append(res.qc_row)
    return files


def case_error(patient_id: str, out: Outcome, failed: int) -> Exception:
    """The build's error for a failed case: an expected fault keeps its kind (and exit code) and message."""
    import etl.errors as errors

    more = f"; {failed - 1} more case(s) failed (logged above)" if failed > 1 else ""
    if out.traceback is not None:  # a bug: its traceback was logged above
        return RuntimeError(f"case {patient_id}: {out.error_kind}: {out.message}{more}")
    cls = getattr(errors, out.error_kind or "", None)
    if not (isinstance(cls, type) and issubclass(cls, EtlError)):
        cls = EtlError
    exc = cls(f"case {patient_id}: {out.message}{more}")
    exc.exit_code = out.exit_code
    return exc


def write_case(job: CaseJob) -> CaseResult:
    """One case (top level, so a process pool or dask worker runs it): copy and hash its files, read the
    masks and phase 0's header, write its patient info; returns the digests and its QC row."""
    tmp = Path(job.target)
    known: dict[str, str] = {}
    masks: dict[str, Any] = {}
    for f in job.files:
        dst = tmp / f.dst
        known[f.dst] = copy_file(Path(f.src), dst, job.link)
        if f.kind != "image":
            masks[f.kind] = _read(patient_info.load_mask, dst, f.src)
    first: Any = _read(nib.load, tmp / job.files[0].dst, job.files[0].src)  # a Nifti1Image (staged files are NIfTI-1)
    header = first.header
    orientation = "".join(nib.aff2axcodes(first.affine))  # as written; verify compares it to the profile
    source = "expert" if "expert" in masks else ("automatic" if "automatic" in masks else None)
    doc = patient_info.patient_info(job.row, list(job.imaging_columns), header, orientation,
                                    masks.get(source) if source else None, source)
    if job.staged_info is not None:
        # staged per-case facts (e.g. an annotated lesion box) are kept; computed values win on conflict
        try:
            doc = patient_info.merge(json.loads(Path(job.staged_info).read_text()), doc)
        except (OSError, ValueError) as exc:
            raise InputUnreadable(f"staged patient info unreadable: {exc}", job.staged_info) from exc
    write_text_file(tmp / job.patient_info, patient_info.dumps(doc))
    row = None
    if masks and job.qc:
        sx, sy, sz = (float(z) for z in header.get_zooms()[:3])
        row = qc.case_row(job.patient_id, (sx, sy, sz), masks.get("automatic"), masks.get("expert"))
    return CaseResult(known, row, job.staged_info is not None)


def _read(load: Any, path: Path, staged: str) -> Any:
    """``load(path)`` of a copied NIfTI; a damaged one is an ``InputUnreadable`` naming the staged file."""
    from nibabel.filebasedimages import ImageFileError

    try:
        return load(path)
    except (OSError, EOFError, ValueError, zlib.error, ImageFileError) as exc:
        # nibabel names the copy in OUT.partial, which the failed build removes: the error names the staged file
        why = " ".join(str(exc).replace(f'"{path}"', "the file").replace(str(path), "the file").split())
        why = why or type(exc).__name__
        raise InputUnreadable(f"staged NIfTI unreadable: {why}", staged) from exc


def copy_file(src: Path, dst: Path, link: bool) -> str:
    """Byte-for-byte copy (or hard link) returning the sha256 of the bytes; an unreadable source is an
    ``InputUnreadable`` naming it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return sha256_file(dst)
        except OSError:
            pass  # other file system: fall back to copying
    h = hashlib.sha256()
    try:
        fin = open(src, "rb")
    except OSError as exc:
        raise InputUnreadable(f"staged file unreadable: {exc.strerror or exc}", str(src)) from exc
    with fin, open(dst, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            h.update(chunk)
            fout.write(chunk)
    return h.hexdigest()


def write_text_file(path: Path, text: str) -> None:
    """A UTF-8 text file inside the build's temporary directory (atomic as a whole: ``atomic_dir``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
