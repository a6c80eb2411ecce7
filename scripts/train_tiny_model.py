#!/usr/bin/env python
"""Train the tiny nnU-Net shipped in etl/segment/tiny_model (tests and the demo predict with it).

A stock nnU-Net v2 run (fingerprint, ExperimentPlanner, DefaultPreprocessor, nnUNetTrainer, 3d_fullres,
fold 0) on seeded synthetic phantoms, made small in three places only: a narrower network (features per
stage capped in plans.json), few epochs with few iterations, and a checkpoint stripped of optimizer state.
Input channel and normalisation come from the release definition, through the same export code the
``segment`` stage uses, so training and prediction see identical inputs.

    python scripts/train_tiny_model.py [--out etl/segment/tiny_model] [--cases 24] [--epochs 20]

Everything nnU-Net writes goes to a temp folder (its nnUNet_raw/_preprocessed/_results variables are set
here); nothing is downloaded. Runs in about 2-4 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASET_ID = 901
DATASET_NAME = f"Dataset{DATASET_ID:03d}_MamaMiaTinyPhantom"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "etl" / "segment" / "tiny_model")
    ap.add_argument("--work", type=Path, default=None, help="keep nnU-Net's folders here (default: temp, removed)")
    ap.add_argument("--cases", type=int, default=24, help="training phantoms (fold 0 trains on 80%%)")
    ap.add_argument("--eval-cases", type=int, default=10, help="unseen phantoms to measure Dice on")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--iterations", type=int, default=25, help="training iterations per epoch")
    ap.add_argument("--features", type=int, default=8, help="features of the first stage (doubling, capped)")
    ap.add_argument("--max-features", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--definition", type=Path, default=None, help="release definition (default: shipped v1)")
    ap.add_argument("--min-dice", type=float, default=0.8,
                    help="keep the previous model folder unless the new one reaches this mean Dice")
    args = ap.parse_args(argv)

    work = Path(args.work or tempfile.mkdtemp(prefix="tiny-nnunet-")).resolve()
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (work / var).mkdir(parents=True, exist_ok=True)
        os.environ[var] = str(work / var)
    os.environ["nnUNet_n_proc_DA"] = str(args.threads)  # the planner sets torch threads from this one
    os.environ["nnUNet_compile"] = "false"
    t0 = time.monotonic()
    try:
        return _train(args, work, t0)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def _train(args: argparse.Namespace, work: Path, t0: float) -> int:
    import numpy as np
    import torch

    from etl.atomic import atomic_dir, write_text
    from etl.layout import Layout
    from etl.segment.config import load_config
    from etl.segment.io import find_cases
    from etl.segment.nnunet import TRAINER_DIR, export_raw
    from etl.segment.synthetic import stage_phantom
    from etl.synth.phantom import make_phantom

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    config = load_config(args.definition)

    # 1. Synthetic staged cases -> nnU-Net raw dataset (same export as the segment stage).
    rng = np.random.default_rng(args.seed)
    staged = Layout.from_definition(work / "staged", args.definition)
    train_seeds = [10_000 + args.seed * 1000 + i for i in range(args.cases)]
    for s in train_seeds:
        ph = make_phantom(s, n_phases=int(rng.integers(3, 6)), bilateral=bool(rng.random() < 0.7),
                          fat_suppressed=bool(rng.random() < 0.6))
        stage_phantom(staged, f"TRAIN_{s}", ph)
    raw = Path(os.environ["nnUNet_raw"]) / DATASET_NAME
    export_raw(find_cases(staged), raw, config, training=True)
    print(f"[{time.monotonic() - t0:5.1f} s] exported {args.cases} training cases", flush=True)

    # 2. Stock planning and preprocessing, with a narrow network.
    from batchgenerators.utilities.file_and_folder_operations import load_json, save_json
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess

    extract_fingerprints([DATASET_ID], num_processes=args.threads, check_dataset_integrity=True, verbose=False,
                         show_progress_bar=False)
    plan_experiments([DATASET_ID])
    pre = Path(os.environ["nnUNet_preprocessed"]) / DATASET_NAME
    plans = load_json(str(pre / "nnUNetPlans.json"))
    cfg = plans["configurations"]["3d_fullres"]
    arch = cfg["architecture"]["arch_kwargs"]
    arch["features_per_stage"] = [min(args.features * 2**i, args.max_features) for i in range(arch["n_stages"])]
    save_json(plans, str(pre / "nnUNetPlans.json"), sort_keys=False)
    preprocess([DATASET_ID], configurations=("3d_fullres",), num_processes=(args.threads,), show_progress_bar=False)
    print(f"[{time.monotonic() - t0:5.1f} s] planned: patch {cfg['patch_size']}, spacing {cfg['spacing']}, "
          f"features {arch['features_per_stage']}", flush=True)

    # 3. Stock trainer, few short epochs.
    from nnunetv2.run.run_training import get_trainer_from_args

    os.environ["nnUNet_n_proc_DA"] = "0"  # augmentation in-process: no worker pool competing for 2 cores
    torch.set_num_threads(args.threads)
    trainer = get_trainer_from_args(DATASET_NAME, "3d_fullres", 0, "nnUNetTrainer", "nnUNetPlans",
                                    device=torch.device("cpu"))
    trainer.num_epochs = args.epochs
    trainer.num_iterations_per_epoch = args.iterations
    trainer.num_val_iterations_per_epoch = 5
    trainer.run_training()
    t_train = time.monotonic() - t0
    print(f"[{t_train:5.1f} s] trained {args.epochs} epochs x {args.iterations} iterations", flush=True)

    result = Path(os.environ["nnUNet_results"]) / DATASET_NAME / TRAINER_DIR
    # 4. Ship only what inference needs: dataset.json, plans.json, fold_0/checkpoint_final.pth (no optimizer).
    with atomic_dir(args.out) as out:
        model_dir = out / TRAINER_DIR
        (model_dir / "fold_0").mkdir(parents=True)
        shutil.copy(result / "dataset.json", model_dir / "dataset.json")
        shutil.copy(result / "plans.json", model_dir / "plans.json")
        ckpt = torch.load(result / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        slim = {k: ckpt[k] for k in ("network_weights", "init_args", "trainer_name",
                                     "inference_allowed_mirroring_axes", "current_epoch") if k in ckpt}
        torch.save(slim, model_dir / "fold_0" / "checkpoint_final.pth")

        # 5. Dice on unseen phantoms, through the segment stage's own predict path.
        from etl.segment.metrics import agreement
        from etl.segment.nnunet import Predictor, predict_case, resolve_model
        from etl.segment.io import read_array, spacing_of, load

        ev = Layout.from_definition(work / "eval", args.definition)
        eval_seeds = [90_000 + args.seed * 1000 + i for i in range(args.eval_cases)]
        for s in eval_seeds:
            stage_phantom(ev, f"EVAL_{s}", make_phantom(s))
        predictor = Predictor(resolve_model(out), device="cpu", threads=args.threads)
        rows = []
        for case in find_cases(ev):
            pred = predict_case(predictor, case, config, work / "predict")
            ref = read_array(case.expert, np.float32) > 0.5
            a = agreement(pred, ref, spacing_of(load(case.expert)))
            rows.append(a)
        dices = [r.dice for r in rows]
        hd95 = [r.hd95_mm for r in rows]
        meta = {
            "what": "tiny nnU-Net v2 for tests and the offline demo; NOT a clinical model",
            "trainer": TRAINER_DIR,
            "dataset": DATASET_NAME,
            "fold": 0,
            "training_phantom_seeds": [train_seeds[0], train_seeds[-1]],
            "training_cases": args.cases,
            "epochs": args.epochs,
            "iterations_per_epoch": args.iterations,
            "seed": args.seed,
            "features_per_stage": arch["features_per_stage"],
            "patch_size": cfg["patch_size"],
            "input_phase": config.input_phase,
            "normalization": config.normalization,
            "eval_phantom_seeds": [eval_seeds[0], eval_seeds[-1]],
            "eval_dice_mean": round(float(np.mean(dices)), 4),
            "eval_dice_min": round(float(np.min(dices)), 4),
            "eval_hd95_mm_mean": round(float(np.nanmean(hd95)), 3),
            "train_seconds": round(t_train, 1),
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "nnunetv2": _version("nnunetv2")},
            "command": (f"python scripts/train_tiny_model.py --cases {args.cases} --epochs {args.epochs} "
                        f"--iterations {args.iterations} --features {args.features} --max-features {args.max_features} "
                        f"--seed {args.seed} --threads {args.threads}"),
        }
        if np.mean(dices) < args.min_dice:  # leaving the block by an exception keeps the previous model
            print(f"mean Dice {np.mean(dices):.3f} < {args.min_dice}: model not written", flush=True)
            raise SystemExit(1)
        write_text(out / "metadata.json", json.dumps(meta, indent=2) + "\n")
        write_text(out / "README.md", _readme(meta))
        for p in out.rglob("*"):  # package data: readable by everyone after a system-wide install
            p.chmod(0o755 if p.is_dir() else 0o644)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"[{time.monotonic() - t0:5.1f} s] Dice on {len(dices)} unseen phantoms: mean {np.mean(dices):.3f} "
          f"min {np.min(dices):.3f}; HD95 mean {np.nanmean(hd95):.2f} mm; model folder {size / 1e6:.2f} MB -> {args.out}")
    return 0


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def _readme(meta: dict) -> str:
    return f"""# Tiny nnU-Net model (synthetic phantoms only)

Made by `scripts/train_tiny_model.py` so that tests and `mamamia demo` can run the real nnU-Net v2
prediction path without a GPU, training or a download. It has only ever seen synthetic phantoms
(`etl.synth.phantom`); it is not a breast-tumour model and must never be used on patient data.

- Layout: `{meta['trainer']}/` with `dataset.json`, `plans.json`, `fold_0/checkpoint_final.pth`
  (the published nnU-Net layout; the optimizer state is stripped to keep it small).
- Training: stock `nnUNetTrainer`, 3d_fullres, fold 0 of {meta['training_cases']} phantoms
  (seeds {meta['training_phantom_seeds'][0]}..{meta['training_phantom_seeds'][1]}), {meta['epochs']} epochs x
  {meta['iterations_per_epoch']} iterations on CPU, seed {meta['seed']}, features per stage {meta['features_per_stage']},
  patch {meta['patch_size']}.
- Input: phase {meta['input_phase']} (first post-contrast), normalization `{meta['normalization']}` (release definition).
- Measured on {len(range(meta['eval_phantom_seeds'][0], meta['eval_phantom_seeds'][1] + 1))} unseen phantoms
  (seeds {meta['eval_phantom_seeds'][0]}..{meta['eval_phantom_seeds'][1]}): mean Dice {meta['eval_dice_mean']},
  min Dice {meta['eval_dice_min']}, mean HD95 {meta['eval_hd95_mm_mean']} mm.
- Versions: {meta['versions']}. Training took {meta['train_seconds']} s.

Retrain: `{meta['command']}`
"""


if __name__ == "__main__":
    sys.exit(main())
