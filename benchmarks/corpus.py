"""Corpus-scale DICOM -> NIfTI: `mamamia convert` on a folder of cases vs dcm2niix, as whole commands.

A curator converts ~9,000 phases, not one, so this times what they run: the whole command over a folder of
full-size cases (default 8: half axial 512x512x120, half sagittal 256x256x60, 4 phases each, the seeded
phantom with textured parenchyma and noise, so compression is realistic), same machine, same run:

  mamamia convert CORPUS OUT --jobs 1        and --jobs 2
  dcm2niix -z y -1, one case at a time         and two cases at a time (two processes)

Reported: wall seconds, output MB, peak resident MB of the largest single process (a worker, for ours),
and the ratios the targets are stated in: ours(--jobs 2) / dcm2niix(2 at a time) (target <= 0.67) and
ours(--jobs 1) / ours(--jobs 2) (target >= 1.6 on a quiet machine).

    python benchmarks/corpus.py [--cases 8] [--phases 4] [--repeat 2] [--workdir DIR] [--small]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def make_corpus(root: Path, n_cases: int, n_phases: int, small: bool) -> tuple[list[Path], float, float]:
    """Write (or reuse) the corpus; return the case folders, the raw voxel MB of all phases and of the
    largest single phase (what one worker holds at once)."""
    from etl.synth.dicom import StudySpec, write_study

    cases, raw, largest = [], 0.0, 0.0
    for i in range(n_cases):
        axial = i % 2 == 0
        if small:
            matrix, slices, spacing, thick = (128, 128), 40, (1.4, 1.4), 3.0
        elif axial:
            matrix, slices, spacing, thick = (512, 512), 120, (0.7031, 0.7031), 1.5
        else:
            matrix, slices, spacing, thick = (256, 256), 60, (0.9375, 0.9375), 3.0
        pid = f"DUKE_{i + 1:03d}"
        spec = replace(StudySpec(patient_id=pid, dataset="DUKE", view="axial" if axial else "sagittal",
                                 vendor=("GE", "SIEMENS", "Philips")[i % 3], n_phases=n_phases,
                                 layout=("per_phase", "single_series")[(i // 2) % 2], extra_non_dicom=False),
                       matrix=matrix, n_slices=slices, pixel_spacing=spacing, slice_spacing=thick)
        case = root / pid
        if not case.exists():
            t = time.perf_counter()
            write_study(case.with_suffix(".partial"), spec, seed=1000 + i)
            case.with_suffix(".partial").rename(case)
            print(f"wrote {pid} ({spec.view}, {matrix[0]}x{matrix[1]}x{slices} x {n_phases} phases) "
                  f"in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        cases.append(case)
        raw += matrix[0] * matrix[1] * slices * n_phases * 2 / 1e6
        largest = max(largest, matrix[0] * matrix[1] * slices * 2 / 1e6)
    return cases, raw, largest


def _run_here(cmds: list[list[str]], parallel: int) -> dict[str, float]:
    """In a fresh measuring process: run the commands ``parallel`` at a time; wall seconds and the largest
    descendant's peak RSS (RUSAGE_CHILDREN is a running maximum, so each setting needs its own process)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t = time.perf_counter()

    def one(cmd: list[str]) -> None:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, cmds))
    return {"wall": time.perf_counter() - t, "peak": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def _run(cmds: list[list[str]], parallel: int) -> tuple[float, float]:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--exec", json.dumps([parallel, cmds])],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.strip()[-800:])
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return got["wall"], got["peak"]


def _out_mb(out: Path) -> float:
    return sum(p.stat().st_size for p in out.rglob("*.nii*")) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--phases", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2, help="runs per setting; the fastest is kept")
    ap.add_argument("--workdir", type=Path, help="keep the generated corpus here (reused when present)")
    ap.add_argument("--small", action="store_true", help="128x128x40 cases: a quick check of the script itself")
    ap.add_argument("--exec", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.exec:
        parallel, cmds = json.loads(args.exec)
        print(json.dumps(_run_here(cmds, parallel)))
        return 0
    sys.path.insert(0, str(REPO))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mamamia-corpus-"))
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    cases, raw_mb, phase_mb = make_corpus(corpus, args.cases, args.phases, args.small)
    d2n = str(BIN / "dcm2niix") if (BIN / "dcm2niix").exists() else shutil.which("dcm2niix")
    mamamia = str(BIN / "mamamia")

    settings: list[tuple[str, int, object]] = [
        ("mamamia convert --jobs 1", 1, lambda out: [[mamamia, "convert", str(corpus), str(out), "--jobs", "1"]]),
        ("mamamia convert --jobs 2", 1, lambda out: [[mamamia, "convert", str(corpus), str(out), "--jobs", "2"]]),
    ]
    if d2n:
        def d2n_cmds(out: Path) -> list[list[str]]:
            cmds = []
            for case in cases:
                (out / case.name).mkdir(parents=True, exist_ok=True)
                cmds.append([d2n, "-z", "y", "-1", "-f", "%s_%t", "-o", str(out / case.name), str(case)])
            return cmds
        settings += [("dcm2niix -z y -1, 1 case at a time", 1, d2n_cmds),
                     ("dcm2niix -z y -1, 2 cases at a time", 2, d2n_cmds)]
    else:
        print("dcm2niix not found: peers skipped (pip install dcm2niix)", file=sys.stderr)

    rows = []
    for label, parallel, make_cmds in settings:
        best = None
        for _ in range(args.repeat):
            out = work / "out"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            wall, peak = _run(make_cmds(out), parallel)  # type: ignore[operator]
            row = {"label": label, "wall": wall, "out_mb": _out_mb(out), "peak_mb": peak}
            if best is None or wall < best["wall"]:
                best = row
        rows.append(best)
        print(f"{label}: {best['wall']:.2f} s", file=sys.stderr)

    n_phases = args.cases * args.phases
    print(f"\n{args.cases} cases, {n_phases} phases, {raw_mb:.0f} MB raw voxels, {os.cpu_count()} cores, "
          f"best of {args.repeat}\n")
    print("| command | wall s | phases/s | out MB | peak MB (largest process) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['label']} | {r['wall']:.2f} | {n_phases / r['wall']:.2f} | {r['out_mb']:.0f} | {r['peak_mb']:.0f} |")
    by = {r["label"]: r["wall"] for r in rows}
    j1, j2 = by["mamamia convert --jobs 1"], by["mamamia convert --jobs 2"]
    print(f"\nours --jobs 1 / --jobs 2: {j1 / j2:.2f}x (target >= 1.6)")
    if d2n:
        d2 = by["dcm2niix -z y -1, 2 cases at a time"]
        print(f"ours --jobs 2 / dcm2niix 2 at a time: {j2 / d2:.2f} (target <= 0.67)")
    print(f"peak of the largest process of ours / raw MB of the largest phase ({phase_mb:.0f} MB): "
          f"{max(r['peak_mb'] for r in rows[:2]) / phase_mb:.1f}x (target <= 3x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
