"""The segmentation stage: preliminary masks for every staged case, then the QC table.

Per case, the mask is written atomically to ``segmentations/automatic/{patient_id}.nii.gz`` on the grid of
the input phase; a case whose mask exists is skipped, so a killed run resumes where it stopped. The QC
table is recomputed from all masks present at the end (it is cheap), so it always matches the files.

Mask bookkeeping (``segmentation_methods.json`` at the staged root, patient_id -> entry, see
``etl/segment/bookkeeping.py``): which method made each automatic mask, the model by the sha256 of its
files (never by the path it was given, so a resume through another spelling of the path redoes nothing),
and the sha256 of the mask written. Before any work starts every case to do gets a ``pending`` entry, so a
killed run leaves no mask of unknown origin. A rerun with another method or model redoes the masks the
earlier one made; a mask whose bytes no longer match its record was edited by a curator and is kept
(reported), as is a mask nobody recorded (put there by hand).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from etl.atomic import atomic_path
from etl.contracts import QC
from etl.errors import ConfigError, EtlError, SegmentError
from etl.layout import Layout
from etl.progress import track
from etl.segment import bookkeeping as book
from etl.segment.config import SegmentationConfig, load_config
from etl.segment.io import (Case, grid_difference, load, read_array, read_phases, reference_phase, same_grid,
                            scan_cases, spacing_of, write_nifti)
from etl.types import StrPath

log = logging.getLogger("etl.segment")

QC_FILE = QC
METHODS_FILE = book.METHODS_FILE  # patient_id -> what made its automatic mask (etl/segment/bookkeeping.py)
QC_COLUMNS = {
    "patient_id": "string",
    "mask_volume_mm3": "Float64",
    "lesion_count": "Int64",
    "has_expert": "boolean",
    "expert_volume_mm3": "Float64",
    "dice": "Float64",
    "hd95_mm": "Float64",
    "msd_mm": "Float64",
}


@dataclass
class RunResult:
    method: str
    device: str
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (patient_id, one-line reason)
    qc: pd.DataFrame | None = None
    qc_path: Path | None = None
    model: str | None = None
    folds: tuple[int, ...] = ()
    redone: list[str] = field(default_factory=list)  # masks an earlier, different method had made
    kept: list[tuple[str, str]] = field(default_factory=list)  # (patient_id, why) masks never overwritten
    model_sha256: str | None = None


read_methods = book.read_methods


def _reference(case: Case, config: SegmentationConfig) -> Path:
    return reference_phase(case, config.input_phase)


WORK_PREFIX = ".segment-work-"


def _clear_stale_temps(root: Path, cases: list[Case]) -> None:
    """What a killed run left: temp masks ('.<name>.*.tmp', never read as masks) and its work folder."""
    for folder in {c.automatic.parent for c in cases}:
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
    for stale in root.glob(WORK_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)


def _ftv_one(args: tuple[Case, SegmentationConfig, str]) -> str:
    from etl.segment.ftv import ftv_mask, read_box

    case, config, info_path = args
    phases, _ = read_phases(case)
    ref = load(_reference(case, config))
    spacing = spacing_of(ref)
    box = read_box(Path(info_path), config.ftv.lesion_box_key, ref.shape, spacing, config.ftv.box_margin_mm)
    try:
        mask = ftv_mask(phases, spacing, config.ftv, box)
    except SegmentError as exc:  # ftv_mask works on arrays: name the case's folder here
        if exc.where:
            raise
        raise SegmentError(exc.what, str(case.phases[0].parent)) from exc
    write_nifti(case.automatic, mask, ref)
    return case.patient_id


def run_segmentation(
    staged: StrPath,
    method: str | None = None,
    model: StrPath | None = None,
    folds: tuple[int, ...] | None = None,
    device: str | None = None,
    definition: StrPath | None = None,
    jobs: int = 1,
    scheduler: str | None = None,
) -> RunResult:
    """Masks for every case without one, then ``segmentation_qc.parquet`` at the staged root.

    A case that fails with an expected fault (unreadable image, too few phases...) is recorded in
    ``failed`` and the others go on; the caller decides the exit status.
    """
    config = load_config(definition)
    layout = Layout.from_definition(staged, definition)
    method = method or config.method
    if method not in ("nnunet", "ftv"):
        raise ConfigError(f"unknown segmentation method {method!r}", "--method")
    cases, unusable = scan_cases(layout)
    _clear_stale_temps(layout.root, cases)
    mf = None
    if method == "nnunet":
        from etl.segment.nnunet import Predictor, predict_case, require_nnunet, resolve_model

        require_nnunet()
        mf = resolve_model(model or config.model, folds if folds is not None else config.folds)
    result = RunResult(method=method, device="cpu")
    if mf is not None:
        from etl.segment.nnunet import model_digest

        result.model, result.folds, result.model_sha256 = str(mf.path), mf.folds, model_digest(mf)
    signature = book.signature(method, mf.path.name if mf else None, result.model_sha256, mf.folds if mf else None)
    record = read_methods(layout.root)
    todo = []
    by_id = {c.patient_id: c for c in cases}
    for c in cases:
        plan = book.decide(c.automatic, record.get(c.patient_id), signature, mf.path if mf else None)
        if plan.entry is not None:
            record[c.patient_id] = plan.entry  # a killed run's pending entry settled, an edit noted
        if plan.action == "make":
            todo.append(c)
        elif plan.action == "redo":
            log.warning("%s: mask made by %s; redoing it with %s", c.patient_id, book.describe(record[c.patient_id]),
                        book.describe(signature))
            result.redone.append(c.patient_id)
            todo.append(c)
        else:  # ours, or kept: of unknown origin, edited by a curator, or unverifiable (never overwritten)
            result.skipped.append(c.patient_id)
            if plan.why:
                log.warning("%s: %s", c.patient_id, plan.why)
                result.kept.append((c.patient_id, plan.why))
    for pid, exc in unusable:  # e.g. a missing phase: recorded, the other cases go on
        log.error("%s: %s", pid, exc.message)
        result.failed.append((pid, exc.message))
    if result.skipped:
        log.info("%d of %d cases already have a mask; resuming with %d", len(result.skipped), len(cases), len(todo))
    before = {c.patient_id: record.get(c.patient_id) for c in todo}
    for c in todo:  # written before any work: a killed run leaves no mask of unknown origin
        record[c.patient_id] = book.pending(signature, before[c.patient_id])
    book.write_methods(layout.root, record)

    def made(pid: str) -> None:
        result.written.append(pid)
        record[pid] = book.done(signature, by_id[pid].automatic)
        book.write_methods(layout.root, record)

    def unmade(pid: str) -> None:
        """A failed case: its record goes back to what it was (the earlier mask, if any, is still there)."""
        earlier = before.get(pid)
        if earlier is None:
            record.pop(pid, None)
        else:
            record[pid] = earlier
        book.write_methods(layout.root, record)

    if mf is not None:
        if todo:
            predictor = Predictor(mf, device or config.device, threads=jobs)
            result.device = predictor.device
            # inside the staged root, so a killed run's leftovers are found and cleared by the next run
            work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=layout.root))
            try:
                for case in track(todo, "nnU-Net", total=len(todo)):
                    try:
                        mask = predict_case(predictor, case, config, work)
                        write_nifti(case.automatic, mask, load(_reference(case, config)))
                    except EtlError as exc:  # one bad case does not stop the corpus
                        log.error("%s: %s", case.patient_id, exc.message)
                        result.failed.append((case.patient_id, exc.message))
                        unmade(case.patient_id)
                        continue
                    made(case.patient_id)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    else:
        from etl.runner import make_runner

        work_items = [(c, config, str(layout.patient_info(c.patient_id))) for c in todo]
        for out in track(make_runner(jobs, scheduler).map(_ftv_one, work_items), "FTV", total=len(work_items)):
            pid = todo[out.index].patient_id
            if out.ok:
                made(pid)
            else:  # an expected fault is its one-line message; a bug also names its exception type
                why = (out.message or "") if out.traceback is None else f"{out.error_kind}: {out.message}"
                log.error("%s: %s", pid, why)
                if out.traceback:
                    log.debug("%s", out.traceback)
                result.failed.append((pid, why))
                unmade(pid)
        result.written.sort()

    result.qc, qc_failed = quality_table(cases, config)
    for pid, why in qc_failed:
        log.error("%s: QC: %s", pid, why)
    result.failed.extend(qc_failed)
    result.qc_path = write_qc(result.qc, layout.root / QC_FILE)
    return result


def case_quality(case: Case, config: SegmentationConfig) -> tuple[dict[str, object], str | None]:
    """One QC row, and why the expert comparison failed (None when it did not); see etl/segment/metrics.py
    for the conventions on empty masks.

    An unreadable automatic mask raises (there is no row to write); an expert mask that cannot be compared
    (unreadable, or on another grid) leaves the row's expert columns null and is reported.
    """
    from etl.segment.metrics import agreement, component_count, volume_mm3

    img = load(case.automatic)
    spacing = spacing_of(img)
    mask = read_array(case.automatic, np.float32) > 0.5
    row: dict[str, object] = {
        "patient_id": case.patient_id,
        "mask_volume_mm3": volume_mm3(mask, spacing),
        "lesion_count": component_count(mask),
        "has_expert": case.expert.exists(),
        "expert_volume_mm3": None, "dice": None, "hd95_mm": None, "msd_mm": None,
    }
    if not case.expert.exists():
        return row, None
    try:
        ref_img = load(case.expert)
        if not same_grid(ref_img, img):
            raise SegmentError(f"expert mask is not on the grid of the automatic mask: {grid_difference(ref_img, img)}",
                               str(case.expert))
        ref = read_array(case.expert, np.float32) > 0.5
    except EtlError as exc:
        return row, exc.message
    a = agreement(mask, ref, spacing)
    row.update(expert_volume_mm3=volume_mm3(ref, spacing), dice=a.dice,
               hd95_mm=None if np.isnan(a.hd95_mm) else a.hd95_mm,
               msd_mm=None if np.isnan(a.msd_mm) else a.msd_mm)
    return row, None


def quality_table(cases: list[Case], config: SegmentationConfig) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """QC rows of every case with an automatic mask, and the (patient_id, reason) of the cases QC could not
    fully score; one bad case never stops the table."""
    rows, failed = [], []
    for c in cases:
        if not c.automatic.exists():
            continue
        try:
            row, why = case_quality(c, config)
        except EtlError as exc:  # the automatic mask itself is unreadable: no row
            failed.append((c.patient_id, f"{exc.message}; delete it to segment the case again"))
            continue
        rows.append(row)
        if why:
            failed.append((c.patient_id, why))
    df = pd.DataFrame(rows, columns=list(QC_COLUMNS))
    return df.astype(QC_COLUMNS).sort_values("patient_id", ignore_index=True), failed


def write_qc(df: pd.DataFrame, target: Path) -> Path:
    with atomic_path(target) as tmp:
        df.to_parquet(tmp, index=False, engine="pyarrow")
    return target
