"""`mamamia release build` on a staged directory of realistic case size, one job vs a local process pool.

Stages --cases synthetic cases (``etl.synth.phantom``: 4 int16 phases of --size x --size x --slices, gzip
level 1, plus the expert mask; axial DUKE ids) with a 49-variable table for them, then times the whole
command (interpreter start and imports included, as a curator runs it) --repeat times for each --jobs value,
interleaved so that other load on the machine spreads over both. Every build must give the same SHA256SUMS.
The defaults are the figures of docs/release.md: 24 cases of 4 phases at 256x256x64, 155 files, ~344 MB.

    python benchmarks/release.py [--cases 24] [--size 256] [--slices 64] [--jobs 1 2] [--repeat 3]
                                 [--link] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAMAMIA = Path(sys.executable).with_name("mamamia")


def stage(base: Path, cases: int, size: int, slices: int) -> Path:
    """Staged directory + table + definition under ``base``; returns the definition."""
    import yaml

    from etl.layout import Layout
    from etl.synth.phantom import make_phantom
    from etl.synth.release_table import previous_release_table
    from etl.synth.staged import stage_phantom
    from etl.tables import write_table

    ids = [f"DUKE_{900 + i:03d}" for i in range(cases)]
    layout = Layout.from_definition(base / "staged")
    for i, pid in enumerate(ids):
        stage_phantom(layout, pid, make_phantom(7000 + i, shape=(size, size, slices), spacing=(0.7, 0.7, 2.0)))
    table = previous_release_table(ids, seed=1)
    table["num_phases"] = 4
    table["view"] = "axial"
    write_table(table, base / "table.parquet")
    doc = yaml.safe_load((REPO / "release" / "v1.yaml").read_text())
    doc.update(name="bench-release", version="0.1.0")
    doc["sources"] = {"staged": ["staged"], "table": "table.parquet", "caches": []}
    doc["split"] = dict(doc["split"], folds=2)
    definition = base / "bench.yaml"
    definition.write_text(yaml.safe_dump(doc, sort_keys=False))
    return definition


def build(definition: Path, out: Path, jobs: int, link: bool) -> tuple[float, bytes, str]:
    shutil.rmtree(out, ignore_errors=True)
    argv = [str(MAMAMIA), "release", "build", str(definition), "--out", str(out), "--jobs", str(jobs)]
    t = time.perf_counter()
    res = subprocess.run(argv + (["--link"] if link else []), capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if res.returncode:
        sys.exit(f"release build failed ({res.returncode}):\n{res.stderr}")
    built = next(line for line in res.stdout.splitlines() if line.startswith("built "))
    return seconds, (out / "SHA256SUMS").read_bytes(), built


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=24)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--link", action="store_true", help="time `release build --link` (hard links)")
    ap.add_argument("--workdir", type=Path, help="keep the staged data here (reused when present)")
    args = ap.parse_args()

    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="bench-release-")
    base = args.workdir or Path(tmp.name)  # type: ignore[union-attr]
    base.mkdir(parents=True, exist_ok=True)
    definition = base / "bench.yaml"
    if not definition.exists():
        t = time.perf_counter()
        definition = stage(base, args.cases, args.size, args.slices)
        print(f"staged {args.cases} cases in {time.perf_counter() - t:.1f} s -> {base}")
    times: dict[int, list[float]] = {j: [] for j in args.jobs}
    sums: set[bytes] = set()
    built = ""
    try:
        for _ in range(args.repeat):
            for jobs in args.jobs:
                seconds, digest, built = build(definition, base / "out" / "bench-release-0.1.0", jobs, args.link)
                times[jobs].append(seconds)
                sums.add(digest)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(built)
    print(f"{'jobs':>4}  {'min s':>6}  {'median s':>8}  {'max s':>6}  runs")
    for jobs, ts in times.items():
        ts = sorted(ts)
        print(f"{jobs:>4}  {ts[0]:6.2f}  {ts[len(ts) // 2]:8.2f}  {ts[-1]:6.2f}  " + " ".join(f"{x:.2f}" for x in times[jobs]))
    print("SHA256SUMS identical across all builds" if len(sums) == 1 else f"SHA256SUMS DIFFER: {len(sums)} versions")
    if len(sums) != 1:
        sys.exit(1)


if __name__ == "__main__":
    main()
