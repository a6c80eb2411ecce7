"""nnU-Net v2: export staged cases to the raw layout, and predict masks with a trained model folder.

nnU-Net (torch + nnunetv2) is the optional extra ``segment``; nothing here imports it at module level, so
the table tools stay light and ``nnunet_available()`` can be asked first. The exported input is what the
model was trained on: one channel, the release definition's ``input_phase`` (MAMA-MIA: the first
post-contrast phase), normalised as ``preprocessing.normalization`` says. nnU-Net itself resamples to its
plans' spacing and back, so exported images and predicted masks stay on the native image grid.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from etl.atomic import write_text
from etl.errors import SegmentError
from etl.interrupts import import_whole
from etl.segment import INSTALL_HINT, nnunet_available
from etl.segment.config import SegmentationConfig
from etl.segment.io import (Case, grid_difference, load, phase_index, read_array, read_phases, reference_phase,
                            same_grid, write_nifti)
from etl.types import StrPath

log = logging.getLogger("etl.segment")

TRAINER_DIR = "nnUNetTrainer__nnUNetPlans__3d_fullres"
_PACKAGE_DIR = Path(__file__).resolve().parent
TINY_MODEL = _PACKAGE_DIR / "tiny_model"


def require_nnunet() -> None:
    if not nnunet_available():
        raise SegmentError(INSTALL_HINT, "nnunetv2")


def configure_environment(work: Path | None = None) -> Path | None:
    """Point nnU-Net's three folders at a private temp dir (unless the user set them); returns that dir.

    nnU-Net reads ``nnUNet_raw``/``nnUNet_preprocessed``/``nnUNet_results`` lazily and warns or fails when
    they are unset; prediction from an explicit model folder writes nothing there. The temp dir is removed
    at exit. Nothing in the prediction path downloads anything.
    """
    names = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
    os.environ.setdefault("nnUNet_compile", "false")  # torch.compile on CPU only costs time here
    if all(os.environ.get(v) for v in names):
        return None
    if work is None:
        work = Path(tempfile.mkdtemp(prefix="mamamia-nnunet-"))
        atexit.register(shutil.rmtree, work, True)
    for var in names:
        if not os.environ.get(var):
            d = Path(work) / var
            d.mkdir(parents=True, exist_ok=True)
            os.environ[var] = str(d)
    return Path(work)


# --------------------------------------------------------------------------------------------- export


def input_channel(phases: np.ndarray, config: SegmentationConfig, where: str = "") -> np.ndarray:
    """The single network input from a case's phases (n, x, y, z), per the release definition."""
    k = phase_index(phases.shape[0], config.input_phase, "input", where or None)
    x = phases[k].astype(np.float32)
    if config.normalization == "none":
        return x
    ref = phases if config.normalization == "zscore_all_phases" else phases[k : k + 1]
    mean = float(ref.mean(dtype=np.float64))
    sd = float(ref.std(dtype=np.float64))
    return ((x - mean) / (sd if sd > 0 else 1.0)).astype(np.float32)


def dataset_json(config: SegmentationConfig, num_training: int = 0) -> dict[str, Any]:
    return {
        "channel_names": {"0": config.channel_name},
        "labels": {"background": 0, "tumor": 1},
        "numTraining": num_training,
        "file_ending": ".nii.gz",
        "description": "mamamia-etl export: input phase %d, normalization %s" % (config.input_phase, config.normalization),
    }


def export_case(case: Case, folder: Path, config: SegmentationConfig, labels_folder: Path | None = None) -> Path:
    """Write ``{case}_0000.nii.gz`` (and the expert label when ``labels_folder``); returns the image path."""
    phases, ref = read_phases(case)  # every phase on the grid of phase 0000, or a SegmentError naming it
    img = input_channel(phases, config, str(case.phases[0].parent))
    target = folder / f"{case.case_id}_0000.nii.gz"
    write_nifti(target, img, ref, dtype=np.float32, level=1)
    if labels_folder is not None:
        if not case.expert.exists():
            raise SegmentError("training export needs an expert mask", str(case.expert))
        if not same_grid(load(case.expert), ref):
            raise SegmentError(f"expert mask is not on the image grid: {grid_difference(load(case.expert), ref)}",
                               str(case.expert))
        mask = (read_array(case.expert, np.float32) > 0.5).astype(np.uint8)
        write_nifti(labels_folder / f"{case.case_id}.nii.gz", mask, ref, dtype=np.uint8, level=1)
    return target


def export_raw(cases: Sequence[Case], out: Path, config: SegmentationConfig, training: bool = False) -> Path:
    """nnU-Net raw dataset folder: ``imagesTs/`` (or ``imagesTr/`` + ``labelsTr/``) and ``dataset.json``."""
    out = Path(out)
    images = out / ("imagesTr" if training else "imagesTs")
    labels = out / "labelsTr" if training else None
    for case in cases:
        export_case(case, images, config, labels)
    write_text(out / "dataset.json", json.dumps(dataset_json(config, len(cases) if training else 0), indent=2))
    return out


# --------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ModelFolder:
    path: Path  # the trainer folder (holds plans.json, dataset.json, fold_k/)
    folds: tuple[int, ...]


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line (torch and nnU-Net messages can span dozens of lines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SegmentError(f"cannot read model file: {_one_line(exc)}", str(path)) from exc
    if not isinstance(doc, dict):
        raise SegmentError("model file must hold a JSON object", str(path))
    return doc


def _check_model_inputs(trainer: Path) -> None:
    """The model must take what the export writes: one input channel (``{case}_0000``)."""
    ds_path = trainer / "dataset.json"
    ds = _read_json(ds_path)
    channels = ds.get("channel_names", ds.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise SegmentError("dataset.json has no channel_names", str(ds_path))
    if len(channels) != 1:
        raise SegmentError(f"model expects {len(channels)} input channels {sorted(channels.values())}; this stage "
                           "exports one (the release definition's input_phase)", str(ds_path))
    _read_json(trainer / "plans.json")


def resolve_model(model: StrPath | None, folds: Sequence[int] | None = None,
                  checkpoint: str = "checkpoint_final.pth") -> ModelFolder:
    """Accept the trainer folder itself or a folder containing ``nnUNetTrainer__nnUNetPlans__3d_fullres``.

    Checked before anything heavy is loaded: plans.json and dataset.json present and readable, one input
    channel, and a ``fold_k/<checkpoint>`` for every requested fold.
    """
    root = Path(model) if model else TINY_MODEL
    if not root.is_dir():
        raise SegmentError("model folder not found", str(root))
    candidates = [root, root / TRAINER_DIR] + sorted(p for p in root.glob("*__*__*") if p.is_dir())
    trainer = next((c for c in candidates if (c / "plans.json").is_file() and (c / "dataset.json").is_file()), None)
    if trainer is None:
        # a folder that looks like a model but lacks one of its files: name that file
        partial = next((c for c in candidates if c.is_dir() and (
            any((c / n).exists() for n in ("plans.json", "dataset.json")) or any(c.glob("fold_*")))), None)
        if partial is not None:
            absent = next(n for n in ("plans.json", "dataset.json") if not (partial / n).is_file())
            raise SegmentError(f"incomplete nnU-Net model folder: {absent} is missing", str(partial / absent))
        raise SegmentError(f"no nnU-Net model here: expected plans.json, dataset.json and fold_k/{checkpoint} "
                           f"in the folder or in {TRAINER_DIR}/", str(root))
    _check_model_inputs(trainer)
    fold_dirs = {int(p.name[5:]): p for p in trainer.glob("fold_*") if p.is_dir() and p.name[5:].isdigit()}
    found = sorted(k for k, p in fold_dirs.items() if (p / checkpoint).is_file())
    if folds is None:
        if not found:
            raise SegmentError(f"no fold_k/{checkpoint} in the model folder", str(trainer))
        incomplete = sorted(set(fold_dirs) - set(found))
        if incomplete:  # e.g. a partial download: never ensemble fewer folds than the model has, silently
            raise SegmentError(f"fold_{incomplete[0]} has no {checkpoint} (incomplete model?); pass --folds "
                               f"{','.join(map(str, found))} to use only the complete folds",
                               str(fold_dirs[incomplete[0]] / checkpoint))
        use = tuple(found)
    else:
        use = tuple(dict.fromkeys(int(f) for f in folds))
        if not use:
            raise SegmentError("no folds requested", "--folds")
        missing = [f for f in use if f not in found]
        if missing:
            raise SegmentError(f"fold(s) {missing} requested but only {found} have {checkpoint}",
                               str(trainer / f"fold_{missing[0]}" / checkpoint))
    return ModelFolder(trainer, use)


def model_files(model: ModelFolder, checkpoint: str = "checkpoint_final.pth") -> list[str]:
    """What decides a model's predictions, relative to its trainer folder: plans, dataset and the
    checkpoint of every fold used."""
    return ["dataset.json", "plans.json", *(f"fold_{k}/{checkpoint}" for k in sorted(model.folds))]


def model_digest(model: ModelFolder, checkpoint: str = "checkpoint_final.pth") -> str:
    """sha256 over ``model_files`` (each file's sha256 and relative name): the model's identity, whatever
    path it was given by (relative or absolute, copied or moved), so a resume recognises its own masks."""
    import hashlib

    from etl.hashing import sha256_file

    h = hashlib.sha256()
    for rel in model_files(model, checkpoint):
        path = model.path / rel
        try:
            digest = sha256_file(path)
        except OSError as exc:
            raise SegmentError(f"cannot read model file: {exc.strerror or exc}", str(path)) from exc
        h.update(f"{digest}  {rel}\n".encode())
    return h.hexdigest()


def select_device(requested: str = "auto") -> Any:
    """torch.device: CUDA when present (or asked for), else CPU with a warning about the time it takes."""
    import torch

    if requested not in ("auto", "cuda", "cpu"):
        raise SegmentError(f"unknown device {requested!r}: use auto, cuda or cpu", "--device")
    if requested == "cuda" and not torch.cuda.is_available():
        raise SegmentError("CUDA requested but torch sees no GPU (CPU-only torch build or no driver)", "--device")
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "auto":
        log.warning("no CUDA device: nnU-Net runs on the CPU; a full-size model (MAMA-MIA) takes minutes per "
                    "case per fold this way. Use a GPU machine for the whole corpus.")
    return torch.device("cpu")


@contextlib.contextmanager
def _quiet(what: str) -> Iterator[None]:
    """nnU-Net prints progress to stdout; keep stdout for our own output and log its text at debug level."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        text = buf.getvalue().strip()
        if text:
            log.debug("nnU-Net (%s): %s", what, text)


def _culprit(model: ModelFolder) -> str:
    """After a failed load: the first checkpoint torch cannot read, else the model folder."""
    import torch

    for fold in model.folds:
        ckpt = model.path / f"fold_{fold}" / "checkpoint_final.pth"
        try:
            torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
        except Exception:
            return str(ckpt)
    return str(model.path)


class Predictor:
    """One nnU-Net predictor kept for a whole run (loading the folds once)."""

    def __init__(self, model: ModelFolder, device: str = "auto", threads: int | None = None) -> None:
        require_nnunet()
        configure_environment()
        try:
            torch = import_whole("torch")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                nnUNetPredictor = import_whole("nnunetv2.inference.predict_from_raw_data").nnUNetPredictor
        except ImportError as exc:  # found but broken (e.g. a missing dependency of nnunetv2)
            raise SegmentError(f"{INSTALL_HINT}; import failed: {_one_line(exc)}", "nnunetv2") from exc

        self._torch = torch
        if threads:
            torch.set_num_threads(int(threads))

        dev = select_device(device)
        self.device = dev.type
        self.model = model
        with _quiet("load"):
            self._p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                      perform_everything_on_device=dev.type == "cuda", device=dev,
                                      verbose=False, verbose_preprocessing=False, allow_tqdm=False)
            try:
                self._p.initialize_from_trained_model_folder(str(model.path), use_folds=model.folds,
                                                             checkpoint_name="checkpoint_final.pth")
            except Exception as exc:  # torch/pickle/nnU-Net raise many kinds; all mean "this model won't load"
                raise SegmentError(f"cannot load the nnU-Net model: {_one_line(exc)}", _culprit(model)) from exc
        self._rw = self._p.plans_manager.image_reader_writer_class()

    def predict_file(self, image: Path, work: Path, where: str | None = None) -> np.ndarray:
        """Mask for one exported ``{case}_0000.nii.gz``, as an array in the file's own voxel order.

        The model's own reader/writer (plans.json ``image_reader_writer``) loads the input and writes the
        segmentation, so the axis order is the one the model was trained with, whatever it is.
        """
        out = work / (image.name.replace("_0000.nii.gz", "") + "_seg.nii.gz")
        try:
            with _quiet(image.name):
                data, props = self._rw.read_images([str(image)])
                seg = self._p.predict_single_npy_array(data, props, None, None, False)
                self._rw.write_seg(seg, str(out), props)
            arr = np.asarray(load(out).dataobj)
        except Exception as exc:  # SimpleITK/torch/nnU-Net errors on this input: this case fails, not the run
            log.debug("nnU-Net failed on %s", image, exc_info=True)
            raise SegmentError(f"nnU-Net could not segment this case: {type(exc).__name__}: {_one_line(exc)}",
                               where or str(image)) from exc
        finally:
            out.unlink(missing_ok=True)
        return arr


def predict_case(predictor: Predictor, case: Case, config: SegmentationConfig, work: Path) -> np.ndarray:
    """Export one case, predict, and return the mask on the grid of phase ``input_phase``."""
    ref_path = reference_phase(case, config.input_phase)
    ref = load(ref_path)
    image = export_case(case, work / "imagesTs", config)
    try:
        seg = predictor.predict_file(image, work, where=str(ref_path))
    finally:
        image.unlink(missing_ok=True)
    if seg.shape != ref.shape:
        raise SegmentError(f"predicted mask shape {seg.shape} differs from the image {ref.shape}", str(ref_path))
    return (seg > 0).astype(np.uint8)


__all__ = [
    "INSTALL_HINT", "TINY_MODEL", "TRAINER_DIR", "ModelFolder", "Predictor", "configure_environment",
    "dataset_json", "export_case", "export_raw", "input_channel", "model_digest", "model_files", "nnunet_available",
    "predict_case", "require_nnunet", "resolve_model", "select_device",
]
