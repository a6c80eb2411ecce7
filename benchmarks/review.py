"""Benchmark of the rating app on full-size cases (512 x 512 x 120 phases, 0.7 x 0.7 x 1.5 mm, int16).

Prints:
- `review prepare`: seconds per case on one core (hash + read two phases and the mask + six PNGs),
- PNG bytes per case (the six views),
- page load after prepare: the case page's HTML plus its six PNGs over HTTP from a real uvicorn server on
  127.0.0.1 (one keep-alive client, fetched one after the other as a pessimistic browser would), median and
  90th percentile over ``--page-cases`` cases; target: median < 150 ms.

    python benchmarks/review.py [--distinct 3] [--page-cases 50] [--work DIR]

No peer tool renders MAMA-MIA's rating views, so there are no ratios. The phantoms are seeded (etl.synth);
the page-load cases are hard links of the distinct ones under other ids (prepare still renders each).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = (512, 512, 120)
SPACING = (0.7, 0.7, 1.5)


def stage_full_size(root: Path, n: int) -> list[str]:
    import nibabel as nib

    from etl.layout import Layout
    from etl.segment.io import write_nifti
    from etl.synth.staged import stage_phantom
    from etl.synth.phantom import make_phantom

    layout = Layout.from_definition(root)
    ids = []
    for k in range(n):
        pid = f"BENCH_{k:04d}"
        if not layout.automatic_mask(pid).exists():
            ph = make_phantom(20000 + k, shape=SHAPE, spacing=SPACING, n_phases=2)
            stage_phantom(layout, pid, ph)
            like = nib.load(str(layout.expert_mask(pid)))
            write_nifti(layout.automatic_mask(pid), ph.mask, like, level=1)
        ids.append(pid)
    return ids


def link_copies(root: Path, distinct: list[str], total: int) -> list[str]:
    """``total`` case ids whose files are hard links of the distinct cases (no extra disk, same bytes)."""
    from etl.layout import Layout

    layout = Layout.from_definition(root)
    ids = list(distinct)
    k = 0
    while len(ids) < total:
        src = distinct[k % len(distinct)]
        pid = f"LINK_{k:04d}"
        pairs = [(layout.image(src, ph), layout.image(pid, ph)) for ph in range(2)]
        pairs.append((layout.automatic_mask(src), layout.automatic_mask(pid)))
        for a, b in pairs:
            b.parent.mkdir(parents=True, exist_ok=True)
            if not b.exists():
                os.link(a, b)
        ids.append(pid)
        k += 1
    return ids


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--distinct", type=int, default=3, help="distinct full-size phantom cases to generate")
    ap.add_argument("--page-cases", type=int, default=50, help="cases to load pages of")
    ap.add_argument("--work", type=Path, default=None, help="work folder (kept; default: a temp folder)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-review-"))
    root = work / "staged"
    print(f"work folder: {work}", file=sys.stderr)

    t0 = time.perf_counter()
    distinct = stage_full_size(root, args.distinct)
    print(f"staged {len(distinct)} full-size case(s) {SHAPE} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    import httpx

    from etl.review.cases import load_cases
    from etl.review.prepare import ensure_views, prepare_views

    # 1. prepare, one core, in this process (imports paid before the clock starts)
    cache = work / "cache-1core"
    shutil.rmtree(cache, ignore_errors=True)  # a rerun with --work measures rendering again, not the cache
    cases = load_cases(root)
    per_case, png_bytes = [], []
    for case in cases.cases:
        if case.patient_id not in distinct:
            continue
        start = time.perf_counter()
        rec, rendered = ensure_views(case, cache)
        per_case.append(time.perf_counter() - start)
        assert rendered
        folder = cache / case.patient_id / rec["key"]
        png_bytes.append(sum((folder / f"{v}.png").stat().st_size for v in rec["views"]))

    # 2. page load over HTTP after prepare (2 worker processes for the copies)
    ids = link_copies(root, distinct, args.page_cases)
    cache2 = work / "cache-pages"
    shutil.rmtree(cache2, ignore_errors=True)
    t1 = time.perf_counter()
    res = prepare_views(root, cache=cache2, jobs=2)
    prep_wall = time.perf_counter() - t1
    # the server in its own process, as a rater runs it (a thread here would share the client's GIL)
    server = subprocess.Popen([sys.executable, "-m", "etl", "review", "serve", str(root), "--db", str(work / "bench.sqlite"),
                               "--rater", "bench", "--cache", str(cache2), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = ""
        assert server.stdout is not None
        for line in server.stdout:
            if line.startswith("open "):
                url = line.split()[1].rstrip("/")
                break
        times = []
        with httpx.Client(base_url=url) as c:
            c.get("/cases")  # connection and first-request warm-up (templates compiled)
            for pid in ids[: args.page_cases]:
                start = time.perf_counter()
                page = c.get(f"/case/{pid}")
                srcs = re.findall(r'<img src="(/views/[^"]+)"', page.text)
                for src in srcs:
                    assert c.get(src).status_code == 200
                times.append(time.perf_counter() - start)
                assert page.status_code == 200 and len(srcs) == 6
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)

    med = statistics.median(times)
    p90 = sorted(times)[int(0.9 * (len(times) - 1))]
    print(f"review prepare, 1 core, {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} int16, 2 phases + mask:")
    print(f"  seconds per case: median {statistics.median(per_case):.2f} (min {min(per_case):.2f}, "
          f"max {max(per_case):.2f}, {len(per_case)} cases)")
    print(f"  PNG bytes per case (6 views): median {statistics.median(png_bytes) / 1e3:.0f} kB")
    print(f"review prepare --jobs 2: {len(res.rendered)} cases in {prep_wall:.1f} s "
          f"({prep_wall / max(1, len(res.rendered)):.2f} s/case wall)")
    print(f"page load (HTML + 6 PNGs, sequential, loopback), {len(times)} cases: median {med * 1e3:.0f} ms, "
          f"p90 {p90 * 1e3:.0f} ms (target < 150 ms: {'met' if med < 0.150 else 'NOT met'})")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
