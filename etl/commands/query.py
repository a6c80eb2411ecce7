"""`mamamia query`: filter the clinical table and print cases, file paths and counts."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    import pandas as pd


class QueryFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def register(app: typer.Typer) -> None:
    @app.command("query")
    def query(
        source: Path = typer.Argument(..., help="Table (.xlsx sheet dataset_info, .parquet, .csv) or a release directory."),
        where: str = typer.Option(None, "--where", "-w",
                                  help="Boolean expression over column names, e.g. \"her2 == 1 and age < 50 and pcr == 1\". "
                                       "Missing values never match."),
        sql: str = typer.Option(None, "--sql", help="DuckDB SQL over a view named `cases`, e.g. "
                                                    "\"SELECT dataset, count(*) FROM cases GROUP BY dataset\"."),
        fmt: QueryFormat = typer.Option(QueryFormat.table, "--format", "-f", help="Output format."),
        columns: str = typer.Option(None, "--columns", "-c",
                                    help="Comma-separated columns to show (default: all for csv/json; "
                                         "for table: patient_id, dataset, the columns the expression uses, paths)."),
        limit: int = typer.Option(None, "--limit", "-n", min=1, help="Show at most N rows (the count is of all)."),
    ) -> None:
        """Filter the clinical table: cases matching an expression, or any SQL. The count goes to stderr."""
        from etl.use.query import QueryError, filter_cases, literal_hints, referenced_columns, run_sql
        from etl.use.textformat import frame_to_records, render_table, shorten_paths

        if (where is None) == (sql is None):
            raise QueryError("give exactly one of --where or --sql", "--where/--sql")
        df, path_columns = _load(source)
        result = filter_cases(df, where) if where is not None else run_sql(df, sql)
        if columns:
            wanted = [c.strip() for c in columns.split(",") if c.strip()]
            unknown = [c for c in wanted if c not in result.columns]
            if unknown:
                raise QueryError(f"unknown column(s) {', '.join(unknown)}", "--columns")
            result = result[wanted]
        elif fmt is QueryFormat.table and where is not None:
            # the terminal table names each case's files without repeating them (mask_path duplicates one
            # of the two masks, patient_info_path follows from the id); CSV/JSON carry every path column
            shown_paths = [c for c in path_columns if c not in ("mask_path", "patient_info_path")]
            keep = ["patient_id", "dataset", *referenced_columns(where, df.columns), *shown_paths]
            result = result[list(dict.fromkeys(c for c in keep if c in result.columns))]
        count = len(result)
        shown = result.head(limit) if limit else result
        if fmt is QueryFormat.csv:
            from etl.safetext import csv_safe_frame

            typer.echo(csv_safe_frame(shown).to_csv(index=False, lineterminator="\n"), nl=False)
        elif fmt is QueryFormat.json:
            import json

            typer.echo(json.dumps(frame_to_records(shown), indent=1, ensure_ascii=False))
        else:
            paths = [c for c in path_columns if c in shown.columns]
            if paths:  # a terminal table stays readable: paths relative to the release, phases counted
                shown = shorten_paths(shown, paths, source.resolve())
            typer.echo(render_table(list(shown.columns), shown.itertuples(index=False, name=None)))
            if paths:
                typer.echo(f"paths relative to {source}; --format csv or json for the full paths", err=True)
        noun = "case" if where is not None else "row"
        typer.echo(f"{count} {noun}{'s' if count != 1 else ''}" + (f" ({len(shown)} shown)" if len(shown) != count else ""),
                   err=True)
        for hint in literal_hints(df, where if where is not None else sql):
            typer.echo(f"hint: {hint}", err=True)


def _load(source: Path) -> tuple[pd.DataFrame, list[str]]:
    """The table to query and the names of its file-path columns (a release adds image/mask paths)."""
    from etl.tables import read_table

    if source.is_dir():
        from etl.use.release import PATH_COLUMNS, table_with_paths

        return table_with_paths(source), list(PATH_COLUMNS)
    return read_table(source), []
