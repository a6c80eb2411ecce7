"""`mamamia split`: stratified train/test split with cross-validation folds (and nnU-Net splits_final.json)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add `mamamia split` to the root app."""

    @app.command("split")
    def split(
        table: Path = typer.Argument(..., help="Clinical table (.xlsx sheet dataset_info, .parquet or .csv)."),
        out: Path = typer.Option(..., "--out", "-o", help="CSV to write (patient_id, split, fold); "
                                 "nnU-Net splits_final.json is written next to it."),
        seed: int = typer.Option(42, "--seed", help="Random seed; the same seed and table give the same split."),
        test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of cases held out for testing."),
        folds: int = typer.Option(5, "--folds", help="Cross-validation folds over the training cases."),
        min_stratum: int = typer.Option(
            None, "--min-stratum", help="Strata smaller than this are pooled with siblings "
            "(default: max(folds, 1/test-fraction))."),
    ) -> None:
        """Split cases into train/test stratified by dataset x pcr x tumor_subtype, with K folds over train."""
        from etl.release.tableio import read_table
        from etl.split import SplitSettings, balance_text, make_split, write_split

        from etl.errors import UsageError

        if not 0.0 < test_fraction < 1.0:
            raise UsageError(f"--test-fraction must be between 0 and 1 (exclusive), got {test_fraction:g}",
                             "--test-fraction")
        if folds < 1:
            raise UsageError(f"--folds must be at least 1, got {folds}", "--folds")
        settings = SplitSettings(seed=seed, test_fraction=test_fraction, folds=folds, min_stratum=min_stratum)
        df = read_table(table)
        result = make_split(df, settings)
        csv_path, json_path = write_split(result, out)
        typer.echo(balance_text(result))
        typer.echo(f"\nwrote {csv_path} and {json_path}")
