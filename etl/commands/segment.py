"""`mamamia segment`: preliminary tumour masks (nnU-Net or FTV) and their QC table for a staged directory."""

from __future__ import annotations

from pathlib import Path

import typer


def _parse_folds(text: str | None) -> tuple[int, ...] | None:
    if text is None or text.strip() == "":
        return None
    from etl.errors import UsageError

    try:
        return tuple(int(f) for f in text.replace(" ", "").split(",") if f != "")
    except ValueError as exc:
        raise UsageError(f"--folds must be comma-separated integers, got {text!r}", "--folds") from exc


def register(app: typer.Typer) -> None:
    """Add `mamamia segment`."""

    @app.command("segment")
    def segment(
        staged: Path = typer.Argument(..., help="Staged directory or release (images/{PATIENT_ID}/... layout)."),
        model: Path | None = typer.Option(
            None, "--model", help="nnU-Net model folder: the trainer folder (nnUNetTrainer__nnUNetPlans__3d_fullres, "
            "with plans.json, dataset.json, fold_k/checkpoint_final.pth) or the folder containing it. "
            "Default: the definition's model, else the tiny model shipped with the package."),
        ftv: bool = typer.Option(False, "--ftv", help="Use the weight-free I-SPY1 FTV thresholds (PE/SER) instead of nnU-Net."),
        folds: str | None = typer.Option(None, "--folds", help="Folds to ensemble, e.g. 0,1,2,3,4. Default: the "
                                         "definition's folds, else every fold_k/ of the model (each needs its checkpoint)."),
        device: str | None = typer.Option(None, "--device", help="auto | cuda | cpu (default: the definition's, auto)."),
        definition: Path | None = typer.Option(None, "--definition", help="Release definition YAML (default: shipped v1)."),
        jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="FTV: worker processes; nnU-Net on CPU: torch threads."),
        scheduler: str | None = typer.Option(None, "--scheduler", help="FTV only: dask.distributed scheduler "
                                             "address (tcp://host:8786) to run the cases on."),
    ) -> None:
        """Write segmentations/automatic/{patient_id}.nii.gz for every case without one, then segmentation_qc.parquet.

        Masks land on the grid of the input phase (same shape and affine as phase 0001). Finished cases are
        skipped, so a killed run resumes. Needs the `segment` extra for nnU-Net; --ftv needs nothing extra.
        """
        from etl.errors import SegmentError, UsageError
        from etl.segment.config import load_config
        from etl.segment.nnunet import INSTALL_HINT, nnunet_available
        from etl.segment.stage import run_segmentation

        if ftv and model is not None:
            raise UsageError("--model and --ftv exclude each other", "--ftv")
        if device is not None and device not in ("auto", "cuda", "cpu"):
            raise UsageError(f"--device must be auto, cuda or cpu, got {device!r}", "--device")
        method = "ftv" if ftv else ("nnunet" if model is not None else load_config(definition).method)
        if method == "nnunet" and not nnunet_available():
            raise SegmentError(INSTALL_HINT, "nnunetv2")
        res = run_segmentation(staged, method=method, model=model, folds=_parse_folds(folds), device=device,
                               definition=definition, jobs=jobs, scheduler=scheduler)
        what = "FTV" if res.method == "ftv" else f"nnU-Net ({res.model}, folds {list(res.folds)}, {res.device})"
        redone = f" ({len(res.redone)} redone: an earlier run had used another method or model)" if res.redone else ""
        typer.echo(f"segmented {len(res.written)} case(s) with {what}{redone}; {len(res.skipped)} already done")
        if res.kept:  # never overwritten (etl/segment/bookkeeping.py); each was logged with its reason
            pid, why = res.kept[0]
            typer.echo(f"kept {len(res.kept)} mask(s) this run would have redone (first: {pid}: {why})")
        qc = res.qc
        if qc is not None and len(qc):
            scored = qc[qc["has_expert"].fillna(False)]
            line = f"QC: {res.qc_path} ({len(qc)} cases"
            if len(scored):
                line += (f"; vs expert on {len(scored)}: mean Dice {scored['dice'].mean():.3f}, "
                         f"median HD95 {scored['hd95_mm'].median():.2f} mm")
            typer.echo(line + ")")
        if res.failed:  # each was logged as it happened; the finished cases are kept
            pid, why = res.failed[0]
            raise SegmentError(f"{len(res.failed)} case(s) failed (finished cases are kept; fix the input and rerun); "
                               f"first: {why}", pid)
