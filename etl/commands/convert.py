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
    threads: int | None = None
    all_series: bool = False  # take every series of the dynamic geometry (series_filter off)


def _layout(job: CaseJob) -> Any:
    from etl.layout import Layout

    return Layout.from_definition(job.out_root, job.definition)


def convert_case(job: CaseJob) -> dict[str, Any]:
    """Convert one case into the staged directory; skip it when its imaging JSON already exists."""
    from etl.atomic import write_text
    from etl.transform.dicom_series import read_phase, scan
    from etl.transform.headers import extract
    from etl.transform.nifti import profile_codes, view_of, write_phase

    layout = _layout(job)
    marker = layout.imaging_json(job.patient_id)
    if marker.exists():
        return {"patient_id": job.patient_id, "status": "skipped", "phases": len(layout.images(job.patient_id))}
    inv = scan(job.source, series_filter=not job.all_series)
    profile_codes(job.profile, view_of(inv.phases[0].affine))  # fail before writing if the view has no profile
    values = extract(inv)
    for i, phase in enumerate(inv.phases):
        write_phase(layout.image(job.patient_id, i), read_phase(phase), phase.affine, job.profile,
                    threads=job.threads)
    stale = len(inv.phases)
    while (extra := layout.image(job.patient_id, stale)).exists():  # a previous run with more phases
        extra.unlink()
        stale += 1
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
    owners = {_owner_of(d) for d in subdirs}
    media = any(f.name.upper() == "DICOMDIR" for f in files)  # a DICOM medium: one patient on it is one case
    if not (len(subdirs) > 1 or media) or None in owners:
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
    from etl.transform.dicom_series import looks_like_dicom, read_header

    if not looks_like_dicom(path):
        return None
    try:
        return read_header(path)
    except (DicomError, InvalidDicomError, OSError):  # a broken file is reported when its case is converted
        return None


def _owner_of(folder: Path) -> tuple[str, str] | None:
    """(PatientID or "", StudyInstanceUID) of the first DICOM image under ``folder``."""
    for dirpath, dirnames, filenames in sorted(os.walk(folder)):
        dirnames.sort()
        for name in sorted(filenames):
            head = _image_header(Path(dirpath) / name)
            if head is not None:
                return (head.patient_id or "", head.study_uid)
    return None


def plan(dicom_dir: Path, out_dir: Path, profile: str, patient_id: str | None,
         definition: str | None = None, exclusions: Path | None = None, all_series: bool = False) -> list[CaseJob]:
    """The cases a command line asks for; in a folder of cases, excluded patients are skipped and logged."""
    from etl.errors import InputUnreadable

    if not dicom_dir.exists():
        raise InputUnreadable("no such folder", str(dicom_dir))
    if dicom_dir.is_file() or patient_id or is_single_case(dicom_dir):
        pid = patient_id or dicom_dir.name
        return [CaseJob(str(dicom_dir), str(out_dir), pid, profile, definition, all_series=all_series)]
    from etl.extract.manifest import read_exclusions

    excluded = read_exclusions(exclusions)
    cases = []
    for p in sorted(p for p in dicom_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if p.name in excluded:
            log.info("skipping %s: excluded (%s)", p.name, excluded[p.name])
        else:
            cases.append(p)
    return [CaseJob(str(p), str(out_dir), p.name, profile, definition, all_series=all_series) for p in cases]


def dry_run(jobs: list[CaseJob]) -> int:
    """Print each case's inventory and planned outputs; write nothing. Returns the number of failed cases."""
    from etl.errors import EtlError
    from etl.transform.dicom_series import scan
    from etl.transform.nifti import profile_codes, view_of

    failed = 0
    for job in jobs:
        layout = _layout(job)
        try:
            inv = scan(job.source, series_filter=not job.all_series)
            view = view_of(inv.phases[0].affine)
            codes = profile_codes(job.profile, view)
        except EtlError as exc:
            typer.echo(f"{job.patient_id}: FAILED {exc.message}")
            failed += 1
            continue
        done = " (already converted: would skip)" if layout.imaging_json(job.patient_id).exists() else ""
        typer.echo(f"{job.patient_id}: {len(inv.phases)} phases, {view} -> {codes} ({job.profile}){done}")
        for line in inv.describe():
            typer.echo(f"  {line}")
        for i in range(len(inv.phases)):
            typer.echo(f"  would write {layout.image(job.patient_id, i)}")
        typer.echo(f"  would write {layout.imaging_json(job.patient_id)}")
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
        all_series: bool = typer.Option(False, "--all-series", help="Take every image series of the dynamic "
                                        "geometry as a phase: switch off the series_filter rules of "
                                        "schemas/imaging_headers.yaml, which ignore subtractions, MIPs, parametric "
                                        "maps (PE/SER), T2, diffusion, non-fat-sat T1 and DERIVED copies beside an "
                                        "ORIGINAL series."),
    ) -> None:
        """Convert DCE-MRI DICOM into oriented phase NIfTI files and the 22 imaging variables (JSON)."""
        from etl.transform.nifti import profiles

        from etl.errors import ConfigError

        if profile not in profiles():
            raise ConfigError(f"unknown profile {profile!r} (known: {', '.join(sorted(profiles()))})", "--profile")
        case_jobs = plan(dicom_dir, out_dir, profile, patient_id, str(definition) if definition else None, exclusions,
                         all_series)
        if dry:
            raise typer.Exit(1 if dry_run(case_jobs) else 0)
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
