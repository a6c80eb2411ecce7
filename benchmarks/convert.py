"""DICOM -> NIfTI on one full-size phase (512x512x120 uint16): ours vs dcm2niix, dicom2nifti and SimpleITK.

Every tool runs in a fresh process, once pinned to one core and once with all cores, best of --repeat.
Reported per run:
  convert s  time to convert inside the process (Python tools: after their imports; dcm2niix: the whole
             process, its start-up is milliseconds)  -> the ratio column compares this
  command s  wall time of the whole command, interpreter start and imports included
  out MB     output file size;  peak MB: peak resident memory of the process (wait4 ru_maxrss)

    python benchmarks/convert.py [--repeat 2] [--slices 120] [--size 512] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
BIN = Path(PY).parent


# ---------------------------------------------------------------- in-process harness (run in a child)
def _run_tool(tool: str, src: str, out: str) -> None:
    """Executed in a child process: convert ``src`` with one Python tool, print its convert seconds."""
    if tool == "ours":
        from etl.transform.dicom import read_phase, scan
        from etl.transform.headers import extract
        from etl.transform.nifti import write_phase

        t = time.perf_counter()
        inv = scan(src)
        extract(inv)
        for i, ph in enumerate(inv.phases):
            write_phase(Path(out) / f"bench_{i:04d}.nii.gz", read_phase(ph), ph.affine, "mama-mia-v1")
    elif tool == "dicom2nifti":
        import logging

        import dicom2nifti

        logging.getLogger("dicom2nifti").setLevel(logging.ERROR)
        t = time.perf_counter()
        dicom2nifti.dicom_series_to_nifti(src, str(Path(out) / "bench.nii.gz"), reorient_nifti=True)
    elif tool == "simpleitk":
        import SimpleITK as sitk

        if len(os.sched_getaffinity(0)) == 1:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        t = time.perf_counter()
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(src))
        img = reader.Execute()
        sitk.WriteImage(sitk.DICOMOrient(img, "LPS"), str(Path(out) / "bench.nii.gz"), useCompression=True)
    else:
        raise SystemExit(f"unknown tool {tool}")
    print(json.dumps({"seconds": time.perf_counter() - t}))


# ---------------------------------------------------------------- driver
def _series_dir(study: Path) -> Path:
    return next(p for p in study.iterdir() if p.is_dir())


def make_study(workdir: Path, size: int, slices: int) -> Path:
    from dataclasses import replace

    from etl.synth.dicom import StudySpec, write_study

    study = workdir / "study"
    if not study.exists():
        spec = replace(StudySpec(n_phases=1, extra_non_dicom=False), matrix=(size, size), n_slices=slices,
                       pixel_spacing=(0.7031, 0.7031), slice_spacing=1.5)
        t = time.perf_counter()
        write_study(study, spec, seed=2026)
        print(f"wrote {slices} slices of {size}x{size} uint16 in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return _series_dir(study)


def tools() -> list[tuple[str, list[str] | None, str | None]]:
    """(label, command template or None, in-process tool name or None)."""
    d2n = str(BIN / "dcm2niix") if (BIN / "dcm2niix").exists() else shutil.which("dcm2niix")
    out: list[tuple[str, list[str] | None, str | None]] = [("ours (mamamia)", None, "ours")]
    out.append(("ours: mamamia convert (CLI)", [str(BIN / "mamamia"), "convert", "{src}", "{out}", "--patient-id",
                                                  "BENCH"], None))
    if d2n:
        for flags in (["-z", "y"], ["-z", "y", "-1"], ["-z", "n"]):
            out.append((f"dcm2niix {' '.join(flags)}", [d2n, *flags, "-f", "bench", "-o", "{out}", "{src}"], None))
    out.append(("dicom2nifti", None, "dicom2nifti"))
    out.append(("SimpleITK", None, "simpleitk"))
    return out


def _rss_runner(cmd: list[str], one_core: bool) -> tuple[float, float, dict]:
    """Run a command in a child; return (wall s, the child's own peak RSS MB via wait4, last JSON line)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        try:
            if one_core:
                os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
            fd = os.open(os.devnull, os.O_WRONLY)
            out_fd = os.open(str(Path(tempfile.gettempdir()) / f"bench-{os.getpid()}.out"),
                             os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out_fd, 1)
            os.dup2(fd, 2)
            os.execve(cmd[0], cmd, env)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    out_path = Path(tempfile.gettempdir()) / f"bench-{pid}.out"
    text = out_path.read_text() if out_path.exists() else ""
    out_path.unlink(missing_ok=True)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {os.waitstatus_to_exitcode(status)}")
    info = {}
    for line in text.splitlines()[::-1]:
        if line.startswith("{"):
            info = json.loads(line)
            break
    return wall, usage.ru_maxrss / 1024, info


def measure(label: str, template: list[str] | None, tool: str | None, src: Path, workdir: Path, one_core: bool,
            repeat: int) -> dict:
    best: dict | None = None
    for _ in range(repeat):
        out = workdir / "out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        if tool:
            cmd = [PY, str(Path(__file__).resolve()), "--run-tool", tool, "--src", str(src), "--out", str(out)]
        else:
            cmd = [a.replace("{src}", str(src)).replace("{out}", str(out)) for a in template or []]
        wall, peak, info = _rss_runner(cmd, one_core)
        files = [p for p in out.rglob("*.nii*")]
        size = sum(p.stat().st_size for p in files) / 1e6
        conv = info.get("seconds", wall) if tool else wall
        row = {"tool": label, "cores": 1 if one_core else len(os.sched_getaffinity(0)), "convert": conv,
               "command": wall, "out_mb": size, "peak_mb": peak, "files": len(files)}
        if best is None or row["convert"] < best["convert"]:
            best = row
    assert best is not None
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-tool", help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=2, help="runs per tool and core setting (best is kept)")
    ap.add_argument("--size", type=int, default=512, help="rows = columns of the phase")
    ap.add_argument("--slices", type=int, default=120, help="slices of the phase")
    ap.add_argument("--workdir", type=Path, help="keep the generated study here (reused if present)")
    ap.add_argument("--only", nargs="*", help="tool labels to run (substring match)")
    args = ap.parse_args()
    if args.run_tool:
        _run_tool(args.run_tool, args.src, args.out)
        return
    sys.path.insert(0, str(REPO))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mamamia-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    src = make_study(workdir, args.size, args.slices)
    raw_mb = args.size * args.size * args.slices * 2 / 1e6
    rows = []
    for one_core in (True, False):
        for label, template, tool in tools():
            if args.only and not any(s in label for s in args.only):
                continue
            try:
                rows.append(measure(label, template, tool, src, workdir, one_core, args.repeat))
            except RuntimeError as exc:
                print(f"{label}: {exc}", file=sys.stderr)
    from etl.transform.gzipstream import BACKEND, DEFAULT_LEVEL

    print(f"\nOne phase {args.size}x{args.size}x{args.slices} uint16 ({raw_mb:.0f} MB raw), best of {args.repeat}; "
          f"ours: {BACKEND} level {DEFAULT_LEVEL}\n")
    print("| tool | cores | convert s | command s | out MB | peak MB | convert / ours |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        ours = next((r for r in rows if r["tool"] == "ours (mamamia)" and r["cores"] == row["cores"]), None)
        ratio = f"{row['convert'] / ours['convert']:.2f}" if ours else "-"  # --only without ours: no ratio
        print(f"| {row['tool']} | {row['cores']} | {row['convert']:.3f} | {row['command']:.3f} | {row['out_mb']:.1f} | "
              f"{row['peak_mb']:.0f} | {ratio} |")
    for cores in sorted({r["cores"] for r in rows}):
        ours = next((r for r in rows if r["tool"] == "ours (mamamia)" and r["cores"] == cores), None)
        if ours is None:
            continue
        peers = [r for r in rows if r["cores"] == cores and not r["tool"].startswith("ours")
                 and "-z n" not in r["tool"]]
        if peers:
            fastest = min(peers, key=lambda r: r["convert"])
            print(f"\n{cores} core(s): fastest compressed peer {fastest['tool']} {fastest['convert']:.3f} s; ours "
                  f"{ours['convert']:.3f} s = {fastest['convert'] / ours['convert']:.2f}x faster"
                  + (" (target <= 0.35 s on one core: " + ("met" if ours["convert"] <= 0.35 else "NOT met") + ")"
                     if cores == 1 else ""))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
