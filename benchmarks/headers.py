"""Header reading for the inventory: the hand-written walker vs pydicom, on full-size MR slices.

Is etl/transform/dicom/walker.py worth its ~150 lines? Each variant reads every file of a generated study
(512x512 slices, explicit VR little endian, as scanners and TCIA deliver), best of --repeat, warm page cache:

  walker                 walk(path): the tags the inventory needs and the PixelData offset
  read_header (walker)   the converter's path: walker + Slice
  dcmread specific_tags  pydicom.dcmread(path, specific_tags=<the walker's tags>, stop_before_pixels=True)
  dcmread header         pydicom.dcmread(path, stop_before_pixels=True)
  read_header (pydicom)  the converter's pydicom path (defer_size: finds the pixel offset) + Slice
  scan, walker / scan, pydicom only   the whole inventory of the study (etl.transform.dicom.scan), the
                         second with the walker switched off

    python benchmarks/headers.py [--slices 120] [--phases 3] [--size 512] [--repeat 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=120)
    ap.add_argument("--phases", type=int, default=3)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-headers-"))
    try:
        run(args, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    """Write the study under ``work``, time every variant, print the table and the verdict."""
    import pydicom

    from etl.synth.dicom import StudySpec, write_study
    from etl.transform.dicom import header as header_mod
    from etl.transform.dicom import scan
    from etl.transform.dicom.header import _pydicom_header, read_header
    from etl.transform.dicom.walker import WANTED, walk

    spec = StudySpec(patient_id="BENCH", matrix=(args.size, args.size), n_slices=args.slices, n_phases=args.phases,
                     pixel_spacing=(0.7031, 0.7031), slice_spacing=1.5, extra_non_dicom=False)
    t0 = time.perf_counter()
    truth = write_study(work / "study", spec, seed=1)
    files = truth.files
    print(f"{len(files)} files of {files[0].stat().st_size / 1e6:.2f} MB ({args.size}x{args.size}, {args.phases} phases "
          f"x {args.slices} slices) written in {time.perf_counter() - t0:.1f} s to {work}")
    keywords = [kw for kw, _ in WANTED.values()]

    def each(fn: Callable[[Path], Any]) -> Callable[[], Any]:
        return lambda: [fn(f) for f in files]

    def scan_pydicom_only() -> None:
        saved = header_mod._fast_header
        header_mod._fast_header = lambda path: None  # the converter without its walker
        try:
            scan(truth.root)
        finally:
            header_mod._fast_header = saved

    variants: list[tuple[str, Callable[[], Any]]] = [
        ("walker", each(walk)),
        ("read_header (walker)", each(read_header)),
        ("dcmread specific_tags", each(lambda f: pydicom.dcmread(f, specific_tags=keywords, stop_before_pixels=True))),
        ("dcmread header", each(lambda f: pydicom.dcmread(f, stop_before_pixels=True))),
        ("read_header (pydicom)", each(_pydicom_header)),
        ("scan, walker", lambda: scan(truth.root)),
        ("scan, pydicom only", scan_pydicom_only),
    ]
    each(lambda f: f.read_bytes()[:0])()  # warm the page cache
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fn in variants:
            results[name] = best(fn, args.repeat)
    base = results["walker"]
    print(f"\n| variant | total s | us per file | / walker |\n| --- | --- | --- | --- |")
    for name, secs in results.items():
        print(f"| {name} | {secs:.3f} | {secs / len(files) * 1e6:.0f} | {secs / base:.1f} |")
    spec_ratio = results["dcmread specific_tags"] / results["walker"]
    scan_ratio = results["scan, pydicom only"] / results["scan, walker"]
    per_case = (results["scan, pydicom only"] - results["scan, walker"]) / len(files) * 600
    print(f"\nwalker vs dcmread(specific_tags, stop_before_pixels): {spec_ratio:.1f}x faster per file; whole "
          f"inventory {scan_ratio:.1f}x faster, {per_case:.2f} s saved per 600-file case "
          f"(~{per_case * 1506 / 60:.0f} min over 1506 cases)")


if __name__ == "__main__":
    main()
