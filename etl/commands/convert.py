"""`mamamia convert`: DICOM case folder(s) -> phase NIfTI files + imaging variables, in a staged directory.

One case, or a folder of cases (one subfolder per patient, named by patient id) run through the Runner.
Each case writes its phase files first and its ``{patient_id}.imaging.json`` last: that JSON is the
completion marker, so a killed run resumes by skipping cases that have it. A failing case is reported
and the others continue; the exit code is 1 at the end if any failed.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import typer

log = logging.getLogger("etl.convert")
UID_DIR = re.compile(r"^[0-9]+(\.[0-9]+)+$")  # a series folder named by its SeriesInstanceUID


@dataclass(frozen=True)
class CaseJob:
    """One case to convert (picklable: sent to pool processes and dask workers)."""

    source: str
    out_root: str
    patient_id: str
    profile: str = "mama-mia-v1"
    definition: str | None = None
    all_series: bool = False  # take every series of the dynamic geometry (series_filter off)
    series_uids: tuple[str, ...] = ()  # series UIDs recorded for the case (--series-uids)
    series_uids_source: str = ""  # where they were to come from ("" = not asked for)


def _layout(job: CaseJob) -> Any:
    from etl.layout import Layout

    return Layout.from_definition(job.out_root, job.definition)


def _scan(job: CaseJob) -> Any:
    """The case's inventory; with --series-uids, a case without recorded UIDs is refused, not guessed."""
    from etl.errors import InputUnreadable
    from etl.transform.dicom import scan

    if job.series_uids_source and not job.series_uids:
        raise InputUnreadable(f"no series UIDs recorded for {job.patient_id}", job.series_uids_source)
    return scan(job.source, series_filter=not job.all_series, series_uids=job.series_uids or None)


def inventory_path(job: CaseJob) -> Path:
    """``inventory.tsv`` of a case, beside its imaging JSON (``{patient_id}.inventory.tsv``)."""
    marker = _layout(job).imaging_json(job.patient_id)
    return marker.parent / f"{job.patient_id.lower()}.inventory.tsv"


def inventory_tsv(inv: Any) -> str:
    """The inventory rows as TSV (tabs and newlines inside a value become spaces)."""
    from etl.transform.dicom.inventory import INVENTORY_COLUMNS

    def cell(v: Any) -> str:
        text = "" if v is None else ("true" if v is True else "false" if v is False else str(v))
        return re.sub(r"[\t\r\n]+", " ", text)

    lines = ["\t".join(INVENTORY_COLUMNS)]
    lines += ["\t".join(cell(row[c]) for c in INVENTORY_COLUMNS) for row in inv.rows()]
    return "\n".join(lines) + "\n"


def convert_case(job: CaseJob) -> dict[str, Any]:
    """Convert one case into the staged directory; skip it when its imaging JSON already exists."""
    from etl.atomic import write_text
    from etl.transform.headers import extract
    from etl.transform.nifti import profile_codes, view_of
    from etl.transform.phase_writer import write_phase_from_dicom

    layout = _layout(job)
    marker = layout.imaging_json(job.patient_id)
    if marker.exists():
        return {"patient_id": job.patient_id, "status": "skipped", "phases": len(layout.images(job.patient_id))}
    inv = _scan(job)
    profile_codes(job.profile, view_of(inv.phases[0].affine))  # fail before writing if the view has no profile
    values = extract(inv)
    for i, phase in enumerate(inv.phases):
        write_phase_from_dicom(layout.image(job.patient_id, i), phase, job.profile)
    stale = len(inv.phases)
    while (extra := layout.image(job.patient_id, stale)).exists():  # a previous run with more phases
        extra.unlink()
        stale += 1
    write_text(inventory_path(job), inventory_tsv(inv))
    record = {"patient_id": job.patient_id.upper(), **values}
    write_text(marker, json.dumps(record, indent=2) + "\n")
    return {"patient_id": job.patient_id, "status": "converted", "phases": len(inv.phases)}


def is_single_case(root: Path) -> bool:
    """One case or a folder of cases? A case folder holds DICOM images itself, only series folders named by
    UID, or subfolders whose images all belong to one patient (several series or studies of one patient);
    otherwise each subfolder is a case. A DICOMDIR (no pixels) does not make a folder a case."""
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    subdirs = sorted(p for p in entries if p.is_dir())
    files = sorted(p for p in entries if p.is_file())
    if not subdirs or any(_image_header(f) is not None for f in files):
        return True
    if all(UID_DIR.match(p.name) for p in subdirs):
        return True
    found = [_owner_of(d) for d in subdirs]
    owners = {o for o in found if o is not None}
    media = any(f.name.upper() == "DICOMDIR" for f in files)  # a DICOM medium: one patient on it is one case
    if not (len(subdirs) > 1 or media) or any(o is None for o in found):
        return False
    if len({study for _, study in owners}) == 1:  # series folders of one study, however they are named
        return True
    # one PatientID across several studies is one patient's visits only when the folder is that patient's
    # (TCIA layout <PatientID>/<study>/<series>) or a medium: anonymized folders of cases often share a
    # constant PatientID ("ANONYMIZED", "0") and must stay separate cases
    patients = {pid for pid, _ in owners}
    return len(patients) == 1 and "" not in patients and (media or root.name in patients)


def _image_header(path: Path) -> Any:
    """Header facts of a DICOM image file, None for anything else (non-DICOM, DICOMDIR, broken files)."""
    from pydicom.errors import InvalidDicomError

    from etl.errors import DicomError
    from etl.transform.dicom import looks_like_dicom, read_header

    if not looks_like_dicom(path):
        return None
    try:
        return read_header(path)
    except (DicomError, InvalidDicomError, OSError):  # a broken file is reported when its case is converted
        return None


def _owner_of(folder: Path) -> tuple[str, str] | None:
    """(PatientID or "", StudyInstanceUID) of the first DICOM image under ``folder``, in sorted order.

    Depth first and lazy: the first image decides, so a case folder of hundreds of files costs one listing
    per level, not a walk of the whole tree (deciding the layout of 1506 cases must not read the corpus)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return None
    for entry in entries:
        if entry.is_file():
            head = _image_header(Path(entry.path))
            if head is not None:
                return (head.patient_id or "", head.study_uid)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            owner = _owner_of(Path(entry.path))
            if owner is not None:
                return owner
    return None


def plan(dicom_dir: Path, out_dir: Path, profile: str, patient_id: str | None,
         definition: str | None = None, exclusions: Path | None = None, all_series: bool = False,
         series_uids: str | None = None) -> list[CaseJob]:
    """The cases a command line asks for; in a folder of cases, excluded patients are skipped and logged.
    ``series_uids`` (a CSV or ``from-manifest``) gives each case its recorded series UIDs."""
    from etl.errors import InputUnreadable
    from etl.transform.dicom.recorded import read_series_uids

    if not dicom_dir.exists():
        raise InputUnreadable("no such folder", str(dicom_dir))
    recorded = read_series_uids(series_uids) if series_uids else {}

    def job(source: Path, pid: str) -> CaseJob:
        uids = recorded.get(pid) or recorded.get(pid.upper()) or []
        return CaseJob(str(source), str(out_dir), pid, profile, definition, all_series=all_series,
                       series_uids=tuple(uids), series_uids_source=str(series_uids or ""))

    if dicom_dir.is_file() or patient_id or is_single_case(dicom_dir):
        return [job(dicom_dir, patient_id or dicom_dir.name)]
    from etl.caselist import read_exclusions

    excluded = read_exclusions(exclusions)
    cases = []
    for p in sorted(p for p in dicom_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if p.name in excluded:
            log.info("skipping %s: excluded (%s)", p.name, excluded[p.name])
        else:
            cases.append(p)
    return [job(p, p.name) for p in cases]


class DryRunFormat(str, Enum):
    """What --dry-run prints."""

    text = "text"
    json = "json"
    tsv = "tsv"




def dry_run(jobs: list[CaseJob], fmt: str = "text") -> int:
    """Print each case's inventory and planned outputs; write nothing. Returns the number of failed cases.

    ``text`` is for people; ``json`` (one object per case: patient_id, phases, error, series rows) and
    ``tsv`` (one row per series, ``patient_id`` first) are the inventory as data."""
    from etl.errors import EtlError
    from etl.transform.dicom.inventory import INVENTORY_COLUMNS
    from etl.transform.nifti import profile_codes, view_of

    failed = 0
    records: list[dict[str, Any]] = []
    if fmt == "tsv":
        typer.echo("\t".join(("patient_id", *INVENTORY_COLUMNS, "error")))
    for job in jobs:
        layout = _layout(job)
        try:
            inv = _scan(job)
            view = view_of(inv.phases[0].affine)
            codes = profile_codes(job.profile, view)
        except EtlError as exc:
            failed += 1
            if fmt == "json":
                records.append({"patient_id": job.patient_id, "phases": None, "error": exc.message, "series": []})
            elif fmt == "tsv":
                typer.echo("\t".join([job.patient_id, *[""] * len(INVENTORY_COLUMNS), exc.message]))
            else:
                typer.echo(f"{job.patient_id}: FAILED {exc.message}")
            continue
        if fmt == "json":
            records.append({"patient_id": job.patient_id, "phases": len(inv.phases), "view": view, "error": None,
                            "series": inv.rows()})
            continue
        if fmt == "tsv":
            for line in inventory_tsv(inv).splitlines()[1:]:
                typer.echo(f"{job.patient_id}\t{line}\t")
            continue
        done = " (already converted: would skip)" if layout.imaging_json(job.patient_id).exists() else ""
        typer.echo(f"{job.patient_id}: {len(inv.phases)} phases, {view} -> {codes} ({job.profile}){done}")
        for line in inv.describe():
            typer.echo(f"  {line}")
        for i in range(len(inv.phases)):
            typer.echo(f"  would write {layout.image(job.patient_id, i)}")
        typer.echo(f"  would write {inventory_path(job)}")
        typer.echo(f"  would write {layout.imaging_json(job.patient_id)}")
    if fmt == "json":
        typer.echo(json.dumps(records, indent=2))
    return failed


def run_cases(jobs: list[CaseJob], n_jobs: int = 1, scheduler: str | None = None) -> list[Any]:
    """Convert cases through the Runner; log each outcome; return the outcomes in case order."""
    from etl.progress import track
    from etl.runner import make_runner

    runner = make_runner(n_jobs, scheduler)
    outcomes = []
    for out in track(runner.map(convert_case, jobs), "converting cases", total=len(jobs)):
        job = jobs[out.index]
        if out.ok:
            log.info("%s: %s (%d phases)", job.patient_id, out.value["status"], out.value["phases"])
        else:
            log.error("%s: %s: %s", job.patient_id, out.error_kind, out.message)
            if out.traceback:
                log.debug("%s", out.traceback)
        outcomes.append(out)
    return sorted(outcomes, key=lambda o: o.index)


def register(app: typer.Typer) -> None:
    """Add `mamamia convert`."""

    @app.command("convert")
    def convert(
        dicom_dir: Path = typer.Argument(..., help="A case folder of DICOM files (nested folders are fine), or a "
                                         "folder with one subfolder per case named by patient id."),
        out_dir: Path = typer.Argument(..., help="Staged directory to write: images/{PATIENT_ID}/"
                                       "{patient_id}_{phase:04d}.nii.gz and imaging/{patient_id}.imaging.json."),
        profile: str = typer.Option("mama-mia-v1", "--profile", help="Orientation profile: mama-mia-v1 (axial LPS, "
                                    "sagittal RAS) or challenge (axial LAS, sagittal PSR)."),
        patient_id: str | None = typer.Option(None, "--patient-id", help="Patient id of a single case (default: "
                                              "the folder name); forces single-case mode."),
        jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Cases converted in parallel by local processes."),
        scheduler: str | None = typer.Option(None, "--scheduler", help="dask.distributed scheduler address "
                                             "(tcp://host:8786); runs the cases on that cluster instead."),
        definition: Path | None = typer.Option(None, "--definition", help="Release definition whose naming "
                                               "templates to use (default: the shipped release/v1.yaml)."),
        exclusions: Path | None = typer.Option(None, "--exclusions", help="Extra exclusions CSV (patient_id, reason); "
                                               "with the shipped manifests/exclusions.csv, applied to a folder of cases."),
        dry: bool = typer.Option(False, "--dry-run", help="Print the inventory (series, phases, geometry) and the "
                                 "files that would be written; write nothing."),
        all_series: bool = typer.Option(False, "--all-series", help="Switch off the series_filter rules of "
                                        "schemas/imaging_headers.yaml, which ignore subtractions, MIPs, parametric "
                                        "maps (PE/SER), T2, diffusion, non-fat-sat T1 and DERIVED copies beside an "
                                        "ORIGINAL series: every series of the dynamic's geometry is a phase (a "
                                        "dynamic held in one series stays that series)."),
        series_uids: str | None = typer.Option(None, "--series-uids", metavar="FILE|from-manifest",
                                               help="Use the series UIDs recorded for each case: a CSV with "
                                               "patient_id and series_uid (or tcia_series_uid) columns, several "
                                               "rows per case allowed, or 'from-manifest' (tcia_series_uid of the "
                                               "shipped manifests/mama-mia-v1.csv: the pre-contrast series, or "
                                               "the series holding the dynamic). A case without one fails."),
        fmt: DryRunFormat = typer.Option(DryRunFormat.text, "--format", case_sensitive=False,
                                         help="--dry-run output: text, json or tsv (the inventory: every "
                                         "series with the rule that decided)."),
    ) -> None:
        """Convert DCE-MRI DICOM into oriented phase NIfTI files and the 22 imaging variables (JSON)."""
        from etl.transform.nifti import profiles

        from etl.errors import UsageError

        if profile not in profiles():
            raise UsageError(f"unknown profile {profile!r} (known: {', '.join(sorted(profiles()))})", "--profile")
        case_jobs = plan(dicom_dir, out_dir, profile, patient_id, str(definition) if definition else None, exclusions,
                         all_series, series_uids)
        if dry:
            raise typer.Exit(1 if dry_run(case_jobs, fmt.value) else 0)
        if len(case_jobs) == 1 and not scheduler:
            result = convert_case(case_jobs[0])  # single case: errors surface as the one-line CLI error
            typer.echo(f"{result['patient_id']}: {result['status']}, {result['phases']} phases -> {out_dir}")
            return
        outcomes = run_cases(case_jobs, jobs, scheduler)
        failed = [o for o in outcomes if not o.ok]
        done = sum(1 for o in outcomes if o.ok and o.value["status"] == "converted")
        skipped = sum(1 for o in outcomes if o.ok and o.value["status"] == "skipped")
        for o in failed:
            typer.echo(f"failed {case_jobs[o.index].patient_id}: {o.message}", err=True)
        typer.echo(f"{done} converted, {skipped} already done, {len(failed)} failed -> {out_dir}")
        if failed:
            raise typer.Exit(1)
