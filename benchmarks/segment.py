#!/usr/bin/env python
"""Seconds per case on CPU for the segmentation stage: tiny nnU-Net vs FTV, measured in the same run.

    python benchmarks/segment.py [--cases 8] [--shape 64 64 24] [--threads 2]

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
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--shape", type=int, nargs=3, default=(64, 64, 24))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--full-size", action="store_true",
                    help="also time one forward pass of a MAMA-MIA-size 3d_fullres U-Net and extrapolate per case")
    ap.add_argument("--device", default="cpu", help="device for --full-size (cuda on a GPU machine)")
    args = ap.parse_args(argv)

    from etl.layout import Layout
    from etl.segment.config import load_config
    from etl.segment.ftv import ftv_mask
    from etl.segment.io import find_cases, read_phases, spacing_of
    from etl.segment.nnunet import Predictor, export_case, nnunet_available, resolve_model
    from etl.segment.stage import run_segmentation
    from etl.synth.staged import stage_phantoms

    shape = tuple(args.shape)
    config = load_config()
    with tempfile.TemporaryDirectory(prefix="bench-segment-") as tmp:
        rows = []
        seeds = list(range(50_000, 50_000 + args.cases))
        for method in ("ftv", "nnunet"):
            if method == "nnunet" and not nnunet_available():
                print("nnunet: not installed (segment extra) - skipped")
                continue
            root = Path(tmp) / method
            stage_phantoms(root, seeds, shape=shape)
            t0 = time.perf_counter()
            res = run_segmentation(root, method=method, device="cpu", jobs=args.threads)
            total = time.perf_counter() - t0
            dice = float(res.qc["dice"].mean()) if res.qc is not None else float("nan")

            # compute only: per case, after inputs are in memory / model loaded
            cases = find_cases(Layout.from_definition(root))
            per_case = []
            if method == "ftv":
                for c in cases:
                    phases, ref = read_phases(c)
                    t = time.perf_counter()
                    ftv_mask(phases, spacing_of(ref), config.ftv)
                    per_case.append(time.perf_counter() - t)
            else:
                t = time.perf_counter()
                pred = Predictor(resolve_model(None), device="cpu", threads=args.threads)
                load_s = time.perf_counter() - t
                work = Path(tmp) / "work"
                for c in cases:
                    image = export_case(c, work / "imagesTs", config)  # reading + export are not compute
                    t = time.perf_counter()
                    pred.predict_file(image, work)
                    per_case.append(time.perf_counter() - t)
                    image.unlink()
                print(f"nnunet: model load {load_s:.2f} s (once per run)")
            rows.append((method, total / args.cases, statistics.median(per_case), dice))

    print(f"\n{args.cases} phantom cases of {shape} voxels, CPU, {args.threads} threads")
    print(f"{'method':8} {'s/case (stage, end to end)':>28} {'s/case (compute)':>18} {'mean Dice':>10}")
    for method, s_case, s_comp, dice in rows:
        print(f"{method:8} {s_case:28.3f} {s_comp:18.3f} {dice:10.3f}")
    if len(rows) == 2:
        print(f"\nratio nnunet/ftv (end to end): {rows[1][1] / rows[0][1]:.1f}x")
    if args.full_size:
        full_size(args.device, args.threads)
    return 0


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
