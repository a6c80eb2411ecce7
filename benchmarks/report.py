"""`mamamia report` at full scale (1506 cases): file size and render time.

Two inputs, each rendered in a fresh `mamamia report` process (interpreter start and imports included),
best of --repeat:
  v1 table    the published clinical_and_imaging_info.xlsx (1506 rows): overview, cohort, imaging,
              validation (no images)
  release     a 1506-case release built from every v1 row with tiny synthetic volumes (the release tests'
              staged-data helper: 12x10x6 voxels, masks on 3 of 4 cases, two raters' scores on 200 cases),
              so every section is drawn: splits, segmentations (volumes, Dice/HD95, kappa, the 10 worst
              cases' thumbnails) and the seeded gallery (one case per dataset and view); rendered
              without verify (--no-verify), then with `release verify --no-checksums` included (reading
              every NIfTI header and scanning for PHI; re-hashing 300 GB is the verify command's business)
Targets (issue 14): file < 15 MB, render < 60 s on 2 cores. There is no peer tool that writes this data
card, so no ratio column.

    python benchmarks/report.py [--repeat 1] [--workdir DIR] [--skip-release]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
V1 = REPO / "tests" / "data" / "reference" / "clinical_and_imaging_info.xlsx"
LIMIT_MB, LIMIT_S = 15.0, 60.0


def make_release(work: Path) -> Path:
    """Staged data for all 1506 v1 rows (tiny volumes) + ratings, built into a release (reused when the work
    directory already holds it)."""
    import numpy as np

    if (work / "release-1506" / "SHA256SUMS").is_file():
        return work / "release-1506"

    from etl.release.build import build_release
    from etl.release.definition import load_definition
    from etl.tables import read_table
    from tests.release.release_helpers import make_staged

    all_ids = [str(p) for p in read_table(V1)["patient_id"]]
    t = time.perf_counter()
    staged = make_staged(work, ids=all_ids)
    rng = np.random.default_rng(0)
    rated = sorted(rng.choice(all_ids, 200, replace=False))
    scores = ["good", "acceptable", "poor", "missed"]
    lines = ["patient_id,rater,score,comment,rated_at,mask_sha256,app_version"]
    for i, pid in enumerate(rated):
        for rater in ("rater_a", "rater_b"):
            lines.append(f"{pid},{rater},{scores[int(rng.integers(0, 4))]},,2026-01-01T00:00:{i % 60:02d}+00:00,,bench")
    (staged.root / "segmentation_quality.csv").write_text("\n".join(lines) + "\n")
    print(f"staged {len(all_ids)} cases in {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    out = work / "release-1506"
    build_release(load_definition(staged.definition), out, link=True, verify=False)
    print(f"built the 1506-case release in {time.perf_counter() - t:.1f} s", flush=True)
    return out


def run(source: Path, out: Path, extra: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (child user + system) and bytes of one `mamamia report` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "etl", "report", str(source), "--out", str(out), *extra],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"mamamia report failed:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--skip-release", action="store_true", help="only the v1 table")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-report-"))
    work.mkdir(parents=True, exist_ok=True)
    inputs = [("v1 table (1506 rows)", V1, [])]
    if not args.skip_release:
        rel = make_release(work / "rel")
        inputs.append(("release, --no-verify", rel, ["--no-verify"]))
        inputs.append(("release, --no-checksums", rel, ["--no-checksums"]))
    print(f"cores: {os.cpu_count()}; work dir {work}")
    print(f"{'input':<26} {'wall s':>8} {'cpu s':>8} {'MB':>7} {'load':>6}  targets: < {LIMIT_S:.0f} s, < {LIMIT_MB:.0f} MB")
    ok = True
    for name, source, extra in inputs:
        load = os.getloadavg()[0]
        best = min((run(source, work / f"report-{len(name)}.html", extra) for _ in range(args.repeat)), key=lambda r: r[0])
        wall, cpu, size = best
        # the card is drawn in one process: on an idle machine wall time ~ CPU time; a shared machine (load
        # above the core count) stretches wall time, so the target is judged on the better of the two
        ok &= min(wall, cpu) < LIMIT_S and size / 1e6 < LIMIT_MB
        print(f"{name:<26} {wall:>8.1f} {cpu:>8.1f} {size / 1e6:>7.2f} {load:>6.1f}")
    print("load: 1-minute load average before the run (2 cores: above 2 means other jobs share them)")
    print("within targets" if ok else "TARGET MISSED")


if __name__ == "__main__":
    main()
