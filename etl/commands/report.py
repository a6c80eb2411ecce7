"""`mamamia report`: a self-contained HTML data card of a release, staged directory or table."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the `report` command to the root app."""

    @app.command("report")
    def report(
        source: Path = typer.Argument(..., help="Release directory, staged directory, or a table (.xlsx sheet "
                                      "dataset_info, .parquet, .csv), e.g. the published clinical_and_imaging_info.xlsx."),
        out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write (atomically)."),
        gallery: int = typer.Option(None, "--gallery", min=0, help="Cases in the gallery (default: one per dataset "
                                    "and view; 0: no gallery)."),
        seed: int = typer.Option(0, "--seed", help="Seed choosing the gallery cases (same seed, same cases)."),
        table: Path = typer.Option(None, "--table", help="Table of a staged directory that holds none "
                                   "(clinical_and_imaging_info.parquet/.xlsx/.csv)."),
        no_checksums: bool = typer.Option(False, "--no-checksums", help="Verify a release without re-hashing "
                                          "every file (faster on a large release; the report says so)."),
        no_verify: bool = typer.Option(False, "--no-verify", help="Do not run `release verify` on a release "
                                       "(schema validation only; the report says so)."),
    ) -> None:
        """Write one HTML file (figures inline, no network needed, printable): overview, cohort, imaging,
        splits, segmentations, gallery and validation of the input. A table alone gives overview, cohort,
        imaging and validation."""
        import time

        from etl.report import write_report

        start = time.monotonic()
        path = write_report(source, out, table=table, gallery=gallery, seed=seed,
                            verify="none" if no_verify else ("quick" if no_checksums else "full"))
        size = path.stat().st_size
        typer.echo(f"report: {path} ({size / 1e6:.1f} MB in {time.monotonic() - start:.1f} s)")
