"""`mamamia summary`: counts in the layout of the MAMA-MIA paper's Tables 1 and 2."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    import pandas as pd


class SummaryFormat(str, Enum):
    json = "json"
    text = "text"


def register(app: typer.Typer) -> None:
    @app.command("summary")
    def summary(
        source: Path = typer.Argument(..., help="Table (.xlsx sheet dataset_info, .parquet, .csv) or a release directory."),
        fmt: SummaryFormat = typer.Option(SummaryFormat.text, "--format", "-f",
                                          help="json: {n_cases, overall: {VAR: {LABEL: N}}, by_dataset: {...}}; "
                                               "text: one readable table per variable."),
        normalized: bool = typer.Option(True, "--normalized/--raw",
                                        help="Count labels after mappings/normalize.yaml (default: 'pre (<6 months "
                                             "since LMP...)' counts as pre, 'hawaian' as hawaiian/pacific islander) or "
                                             "as published (--raw)."),
    ) -> None:
        """Count cases per variable and label, overall and per dataset (age binned; 0/1 as no/yes), with the
        median and interquartile range of age, BMI and follow-up days."""
        import json

        from etl.use.summary import summarize, summary_text

        result = summarize(_load_table(source), normalized=normalized)
        if fmt is SummaryFormat.json:
            typer.echo(json.dumps(result, indent=1))
        else:
            typer.echo(summary_text(result), nl=False)


def _load_table(source: Path) -> pd.DataFrame:
    from etl.tables import read_table

    if source.is_dir():
        from etl.release.tableio import base_frame
        from etl.use.release import open_release

        return base_frame(open_release(source).table)
    return read_table(source)
