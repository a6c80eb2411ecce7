#!/usr/bin/env python
"""Segmentation quality and seconds per case on CPU: tiny nnU-Net vs FTV, measured in the same run.

    python benchmarks/segment.py [--phantoms hard|easy] [--cases 8] [--shape 64 64 24] [--threads 2]

Phantoms: "hard" (default, etl/synth/hard_phantom.py) has weak, heterogeneous and non-mass lesions,
background parenchymal enhancement, motion between phases, a bias field and Rician noise: Dice / HD95 there
are a measurement on synthetic data. "easy" (etl/synth/phantom.py) has a lesion that FTV finds by
construction and the tiny model was trained on: its figures are a consistency check of the stage only.
FTV is run as the stage runs it (whole image, largest component) and, as I-SPY1 reads it, inside a box
around the lesion (the expert mask's bounding box grown by --box-margin-mm, standing in for the reader's box).

Builds a staged directory of synthetic phantoms, then times `run_segmentation` end to end per method
(reading phases, export, prediction or thresholds, atomic write, QC), plus the pure compute part per case
(nnU-Net: its own read of the exported input, preprocessing, sliding-window forward with mirroring, resampling
back and writing the seg; FTV: the thresholds on phases already in memory). A GPU machine runs
the real MAMA-MIA model (5 folds, 1 mm isotropic, full-size 3d_fullres) where this CPU run uses the tiny
one; see docs/segment.md for what that means in time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phantoms", choices=("hard", "easy"), default="hard",
                    help="phantom preset (default hard; easy = the consistency check FTV passes by construction)")
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--shape", type=int, nargs=3, default=(64, 64, 24))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--box-margin-mm", type=float, default=5.0, help="margin of the FTV lesion box around the expert mask")
    ap.add_argument("--per-case", action="store_true", help="also print Dice / HD95 per case")
    ap.add_argument("--full-size", action="store_true",
                    help="also time one forward pass of a MAMA-MIA-size 3d_fullres U-Net and extrapolate per case")
    ap.add_argument("--device", default="cpu", help="device for --full-size (cuda on a GPU machine)")
    args = ap.parse_args(argv)

    from etl.segment import nnunet_available
    from etl.synth.staged import stage_phantoms

    shape = tuple(args.shape)
    seeds = list(range(50_000, 50_000 + args.cases))
    kinds = phantom_kinds(args.phantoms, seeds, shape)
    rows = []
    per_case = {}
    with tempfile.TemporaryDirectory(prefix="bench-segment-") as tmp:
        for method in ("ftv", "ftv-box", "nnunet"):
            if method == "nnunet" and not nnunet_available():
                print("nnunet: not installed (segment extra) - skipped")
                continue
            root = Path(tmp) / method
            ids = stage_phantoms(root, seeds, preset=args.phantoms, shape=shape)
            if method == "ftv-box":
                write_boxes(root, ids, args.box_margin_mm)
            row, qc = run_method(root, method, args.threads, Path(tmp) / "work")
            rows.append(row)
            per_case[method] = qc.set_index("patient_id")

    print(f"\n{args.cases} {args.phantoms} phantom cases of {shape} voxels (seeds {seeds[0]}-{seeds[-1]}), CPU, "
          f"{args.threads} threads")
    if args.phantoms == "easy":
        print("easy phantoms: FTV passes them by construction and the tiny model was trained on their kind;"
              " a consistency check, not a measurement")
    print(f"{'method':8} {'s/case (stage)':>15} {'s/case (compute)':>17} {'Dice mean':>10} {'median':>7} {'min':>6}"
          f" {'HD95 mm mean':>13} {'no HD95':>8}")
    for method, s_case, s_comp, q in rows:
        print(f"{method:8} {s_case:15.3f} {s_comp:17.3f} {q['dice_mean']:10.3f} {q['dice_median']:7.3f} "
              f"{q['dice_min']:6.3f} {q['hd95_mean']:13.2f} {q['hd95_missing']:8d}")
    by_kind = sorted(set(kinds.values()))
    if len(by_kind) > 1:
        for method, qc in per_case.items():
            parts = []
            for kind in by_kind:
                ids = [pid for pid, k in kinds.items() if k == kind]
                parts.append(f"{kind} (n={len(ids)}) {qc.loc[ids, 'dice'].astype(float).mean():.3f}")
            print(f"mean Dice by lesion kind, {method}: " + ", ".join(parts))
    if args.per_case:
        print(f"\n{'case':10} {'kind':5} " + " ".join(f"{m + ' Dice':>12} {'HD95':>6}" for m in per_case))
        for pid in kinds:
            cells = " ".join(f"{float(qc.loc[pid, 'dice']):12.3f} {_num(qc.loc[pid, 'hd95_mm']):>6}"
                             for qc in per_case.values())
            print(f"{pid:10} {kinds[pid]:5} {cells}")
    if len(rows) == 3:
        print(f"\nratio nnunet/ftv (end to end): {rows[2][1] / rows[0][1]:.1f}x")
    if args.full_size:
        full_size(args.device, args.threads)
    return 0


def _num(v: object) -> str:
    return "-" if v is None or v != v else f"{float(v):.1f}"  # type: ignore[arg-type]


def phantom_kinds(preset: str, seeds: list[int], shape: tuple[int, ...]) -> dict[str, str]:
    """Patient id -> lesion kind (easy phantoms are all masses); prints what makes the hard set hard."""
    import numpy as np

    from etl.synth.hard_phantom import build_hard_phantom

    if preset == "easy":
        return {f"SYN_{s:04d}": "mass" for s in seeds}
    out = {}
    below, bpe_cases, shifts = [], 0, []
    for s in seeds:
        h = build_hard_phantom(s, shape=shape)  # type: ignore[arg-type]
        out[f"SYN_{s:04d}"] = h.kind
        lesion = h.phantom.mask.astype(bool)
        below.append(float(np.mean(h.lesion_enhancement[lesion] < 0.7)))
        bpe_cases += bool(np.any((h.background_enhancement >= 0.7) & ~lesion))
        shifts.extend(float(np.linalg.norm(v)) for v in h.shifts_vox if v.any())
    print(f"hard set: {sum(k == 'nme' for k in out.values())} non-mass / {sum(k == 'mass' for k in out.values())} mass; "
          f"lesion voxels below 70 % enhancement (truth): mean {100 * np.mean(below):.0f} % per case "
          f"(range {100 * min(below):.0f}-{100 * max(below):.0f} %); cases with background >= 70 % outside the "
          f"lesion: {bpe_cases}; phase shifts {min(shifts):.2f}-{max(shifts):.2f} voxel")
    return out


def write_boxes(root: Path, ids: list[str], margin_mm: float) -> None:
    """patient_info JSON with the I-SPY1 reader's box: the expert mask's bounding box grown by ``margin_mm``."""
    import json

    import nibabel as nib
    import numpy as np

    from etl.layout import Layout

    layout = Layout.from_definition(root)
    for pid in ids:
        img = nib.load(layout.expert_mask(pid))
        idx = np.argwhere(np.asarray(img.dataobj) > 0)
        grow = [int(np.ceil(margin_mm / z)) for z in img.header.get_zooms()[:3]]
        box = [[max(int(lo) - g, 0), min(int(hi) + 1 + g, n)]
               for lo, hi, g, n in zip(idx.min(0), idx.max(0), grow, img.shape)]
        target = layout.patient_info(pid)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"lesion_box": box}))


def run_method(root: Path, method: str, threads: int, work: Path) -> tuple[tuple[str, float, float, dict], object]:
    """(row: method, s/case end to end, median s/case compute only, quality summary), QC table."""
    from etl.layout import Layout
    from etl.segment.config import load_config
    from etl.segment.ftv import ftv_mask
    from etl.segment.io import find_cases, read_phases, spacing_of
    from etl.segment.nnunet import Predictor, export_case, resolve_model
    from etl.segment.stage import run_segmentation

    config = load_config()
    cases = find_cases(Layout.from_definition(root))
    t0 = time.perf_counter()
    res = run_segmentation(root, method="nnunet" if method == "nnunet" else "ftv", device="cpu", jobs=threads)
    total = time.perf_counter() - t0
    qc = res.qc
    per_case = []
    if method != "nnunet":  # compute only: the thresholds on phases already in memory
        for c in cases:
            phases, ref = read_phases(c)
            t = time.perf_counter()
            ftv_mask(phases, spacing_of(ref), config.ftv)
            per_case.append(time.perf_counter() - t)
    else:
        t = time.perf_counter()
        pred = Predictor(resolve_model(None), device="cpu", threads=threads)
        load_s = time.perf_counter() - t
        for c in cases:
            image = export_case(c, work / "imagesTs", config)  # reading + export are not compute
            t = time.perf_counter()
            pred.predict_file(image, work)
            per_case.append(time.perf_counter() - t)
            image.unlink()
        print(f"nnunet: model load {load_s:.2f} s (once per run)")
    dice = qc["dice"].astype(float)
    hd95 = qc["hd95_mm"].astype(float)
    quality = {"dice_mean": float(dice.mean()), "dice_median": float(dice.median()), "dice_min": float(dice.min()),
               "hd95_mean": float(hd95.mean()), "hd95_missing": int(hd95.isna().sum())}
    return (method, total / len(cases), statistics.median(per_case), quality), qc


def full_size(device: str, threads: int) -> None:
    """One sliding-window tile of a default-size nnU-Net 3d_fullres network, extrapolated to one case.

    Architecture: nnU-Net's default PlainConvUNet for a 1 mm isotropic 3d_fullres plan (6 stages, 32..320
    features, patch 128^3). Case: 358 x 358 x 176 voxels (a 512 x 512 x 160 DUKE scan at 0.7 x 0.7 x 1.1 mm
    resampled to 1 mm). Tiles at step 0.5, 8 mirrorings (test-time augmentation), 5 folds.
    """
    import math

    import torch
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    torch.set_num_threads(threads)
    dev = torch.device(device)
    net = PlainConvUNet(1, 6, (32, 64, 128, 256, 320, 320), torch.nn.Conv3d, 3, (1, 2, 2, 2, 2, 2), 2, 2, 2,
                        conv_bias=True, norm_op=torch.nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                        nonlin=torch.nn.LeakyReLU, nonlin_kwargs={"inplace": True}).to(dev).eval()
    patch = (128, 128, 128)
    x = torch.randn((1, 1) + patch, device=dev)
    with torch.inference_mode():
        net(x)  # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        net(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        fwd = time.perf_counter() - t
    case = (358, 358, 176)
    tiles = math.prod(math.ceil((c - p) / (p / 2)) + 1 if c > p else 1 for c, p in zip(case, patch))
    n = tiles * 8 * 5
    params = sum(p.numel() for p in net.parameters())
    print(f"\nfull-size 3d_fullres U-Net ({params / 1e6:.1f} M parameters), patch {patch}, on {device}:")
    print(f"  one forward pass: {fwd:.2f} s")
    print(f"  one case {case}: {tiles} tiles x 8 mirrorings x 5 folds = {n} passes ~ {n * fwd / 60:.0f} min "
          f"({n * fwd / 3600:.1f} h)")


if __name__ == "__main__":
    sys.exit(main())
