"""`mamamia validate`: every violation of a table or release, with row, column, value, rule and severity."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer


class ValidateFormat(str, Enum):
    text = "text"
    json = "json"


def register(app: typer.Typer) -> None:
    @app.command("validate")
    def validate(
        path: Path = typer.Argument(..., help="Table (.xlsx, .parquet, .csv) or a release directory."),
        fmt: ValidateFormat = typer.Option(ValidateFormat.text, "--format", "-f", help="Report format."),
        sheet: str = typer.Option("dataset_info", "--sheet", help="Sheet to read from an .xlsx workbook."),
        max_shown: int = typer.Option(None, "--max", min=0,
                                      help="Print at most N findings (counts still cover all). Default: all."),
    ) -> None:
        """Check a table against the 49-variable schema (or a whole release) and report every violation.

        Exit 0: valid (warnings allowed); 1: errors found; 2: the input cannot be read.
        Rows are 0-based positions in the table (in an .xlsx sheet, data row N is spreadsheet row N + 2).
        """
        if path.is_dir():
            raise typer.Exit(_validate_release(path, fmt, max_shown))
        raise typer.Exit(_validate_table(path, sheet, fmt, max_shown))


def _validate_table(path: Path, sheet: str, fmt: ValidateFormat, max_shown: int | None) -> int:
    import json

    from etl.tables import read_table
    from etl.validate.schema import validate_frame

    report = validate_frame(read_table(path, sheet=sheet, raw=True))
    if fmt is ValidateFormat.json:
        out = {"path": str(path), **report.to_dict(limit=max_shown)}
        typer.echo(json.dumps(out, indent=1, ensure_ascii=False))
    else:
        for v in report.iter_violations(limit=max_shown):
            typer.echo(v.describe())
        counts = report.counts()
        status = "valid" if report.valid else "INVALID"
        typer.echo(f"{path}: {status}: {report.n_rows} rows, {report.n_errors} errors, {report.n_warnings} warnings")
        for severity in ("error", "warning"):
            for rule, n in counts[severity].items():
                typer.echo(f"  {severity:7s} {n:7d}  {rule}")
    return 0 if report.valid else 1


def _validate_release(path: Path, fmt: ValidateFormat, max_shown: int | None) -> int:
    import json

    from etl.errors import InputUnreadable
    from etl.release.verify import verify_release
    from etl.use.release import is_release

    if not is_release(path):
        raise InputUnreadable("directory is not a release (no clinical_and_imaging_info.parquet)", str(path))
    problems = verify_release(path)
    shown = problems if max_shown is None else problems[:max_shown]
    if fmt is ValidateFormat.json:
        typer.echo(json.dumps({"path": str(path), "valid": not problems, "n_problems": len(problems),
                               "problems": [p.to_dict() for p in shown]}, indent=1, ensure_ascii=False))
    else:
        for p in shown:
            typer.echo(p.describe())
        typer.echo(f"{path}: {'valid' if not problems else 'INVALID'}: {len(problems)} problems")
    return 1 if problems else 0
