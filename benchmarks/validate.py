"""Time schema validation of the v1 table as Parquet, and of a 1000x replicated copy (1.5 M rows).

Targets (issue 3): < 0.3 s for the v1 table, < 15 s for 1.5 M rows, on a 2-core machine.
Run: python benchmarks/validate.py [--v1 tests/data/reference/clinical_and_imaging_info.xlsx] [--copies 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd


def best_of(n: int, fn):  # type: ignore[no-untyped-def]
    times = []
    result = None
    for _ in range(n):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def main() -> None:
    from etl.tables import read_table, write_table
    from etl.validate.schema import load_schema, validate_frame

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--v1", default=str(Path(__file__).resolve().parents[1] / "tests/data/reference/clinical_and_imaging_info.xlsx"))
    ap.add_argument("--copies", type=int, default=1000)
    args = ap.parse_args()
    v1 = Path(args.v1)
    load_schema().pandera  # build once, as a long-lived process would
    with tempfile.TemporaryDirectory() as tmp:
        table = read_table(v1)
        small = Path(tmp) / "v1.parquet"
        write_table(table, small)

        def run_small():  # type: ignore[no-untyped-def]
            return validate_frame(read_table(small, raw=True))

        t_small, rep = best_of(3, run_small)
        print(f"v1 table ({len(table)} rows) parquet read+validate: {t_small:.3f} s "
              f"({len(rep.errors)} errors, {len(rep.warnings)} warnings)  target < 0.3 s")

        big = pd.concat([table] * args.copies, ignore_index=True)
        width = len(str(args.copies))
        # unique ids that still follow each dataset's pattern is impossible at 1000x (DUKE_\d{3});
        # suffix a copy number so uniqueness holds and the pattern rules report (cheaply) per row.
        big["patient_id"] = big["patient_id"] + "_" + pd.Series(
            [f"{i // len(table):0{width}d}" for i in range(len(big))], dtype="string")
        big_path = Path(tmp) / "v1x.parquet"
        write_table(big, big_path)
        t_read, frame = best_of(1, lambda: read_table(big_path, raw=True))
        t_val, rep = best_of(1, lambda: validate_frame(frame))
        print(f"{len(big):,} rows: parquet read {t_read:.2f} s + validate {t_val:.2f} s = {t_read + t_val:.2f} s "
              f"({len(rep.errors):,} errors, {len(rep.warnings):,} warnings)  target < 15 s")


if __name__ == "__main__":
    main()
