"""`mamamia validate`: every violation of a table or release, with row, column, value, rule and severity.

Text output has one layout for tables and releases: the findings (unless ``--summary``), then the counts per
rule, and the verdict line last, so it is what a terminal shows at the end and what ``tail -1`` gives.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import typer


class ValidateFormat(str, Enum):
    text = "text"
    json = "json"


class Severity(str, Enum):
    error = "error"
    warning = "warning"


FINDING_COLUMNS = ("severity", "rule", "row", "patient_id", "column", "value", "message")


def register(app: typer.Typer) -> None:
    @app.command("validate")
    def validate(
        path: Path = typer.Argument(..., help="Table (.xlsx, .parquet, .csv) or a release directory."),
        fmt: ValidateFormat = typer.Option(ValidateFormat.text, "--format", "-f", help="Report format."),
        sheet: str = typer.Option("dataset_info", "--sheet", help="Sheet to read from an .xlsx workbook."),
        max_shown: int = typer.Option(None, "--max", min=0,
                                      help="Print at most N findings (counts still cover all). Default: all."),
        severity: Severity = typer.Option(Severity.warning, "--severity", "-s", case_sensitive=False,
                                          help="Lowest severity to list: error (errors only) or warning (both). "
                                               "Counts and the verdict always cover everything."),
        summary: bool = typer.Option(False, "--summary", help="Only the counts per rule and the verdict."),
        out: Path = typer.Option(None, "--out", "-o", help="Also write the listed findings to FILE.csv or FILE.json "
                                 "(every one, whatever --max says)."),
    ) -> None:
        """Check a table against the 49-variable schema (or a whole release) and report every violation.

        Exit 0: valid (warnings allowed); 1: errors found; 2: the input cannot be read.
        Rows are 0-based positions in the table (in an .xlsx sheet, data row N is spreadsheet row N + 2).
        """
        from etl.errors import UsageError

        if out is not None and out.suffix.lower() not in (".csv", ".json"):
            raise UsageError(f"--out must end in .csv or .json, got {out.name!r}", "--out")
        shown = 0 if summary else max_shown
        if path.is_dir():
            raise typer.Exit(_validate_release(path, fmt, shown, out))
        raise typer.Exit(_validate_table(path, sheet, fmt, shown, severity.value, out))


def _validate_table(path: Path, sheet: str, fmt: ValidateFormat, max_shown: int | None, severity: str,
                    out: Path | None) -> int:
    import json

    from etl.tables import read_table
    from etl.validate.schema import validate_frame

    report = validate_frame(read_table(path, sheet=sheet, raw=True))
    only = "error" if severity == "error" else None
    if out is not None:
        _write_findings(out, (v.to_dict() for v in report.iter_violations(only)))
    counts = report.counts()
    if fmt is ValidateFormat.json:
        doc = {"path": str(path), **report.to_dict(limit=0)}
        doc["violations"] = [v.to_dict() for v in report.iter_violations(only, limit=max_shown)]
        typer.echo(json.dumps(doc, indent=1, ensure_ascii=False))
    else:
        for v in report.iter_violations(only, limit=max_shown):
            typer.echo(v.describe())
        for sev in ("error", "warning"):
            for rule, n in counts[sev].items():
                typer.echo(f"  {sev:7s} {n:7d}  {rule}")
        status = "valid" if report.valid else "INVALID"
        typer.echo(f"{path}: {status}: {report.n_rows} rows, {report.n_errors} errors, {report.n_warnings} warnings")
    return 0 if report.valid else 1


def _validate_release(path: Path, fmt: ValidateFormat, max_shown: int | None, out: Path | None) -> int:
    import json
    from collections import Counter

    from etl.contracts import TABLE
    from etl.errors import InputUnreadable
    from etl.release.verify import verify_release
    from etl.use.release import is_release

    if not is_release(path):
        raise InputUnreadable(f"directory is not a release (no {TABLE})", str(path))
    problems = verify_release(path)  # every release problem is an error
    if out is not None:
        _write_findings(out, ({"severity": "error", "rule": p.check, "column": p.where, "message": p.message}
                              for p in problems))
    shown = problems if max_shown is None else problems[:max_shown]
    counts = Counter(p.check for p in problems)
    if fmt is ValidateFormat.json:
        typer.echo(json.dumps({"path": str(path), "valid": not problems, "n_problems": len(problems),
                               "counts": {"error": dict(sorted(counts.items()))},
                               "problems": [p.to_dict() for p in shown]}, indent=1, ensure_ascii=False))
    else:
        for p in shown:
            typer.echo(p.describe())
        for check, n in sorted(counts.items()):
            typer.echo(f"  {'error':7s} {n:7d}  {check}")
        typer.echo(f"{path}: {'valid' if not problems else 'INVALID'}: {len(problems)} problems")
    return 1 if problems else 0


def _write_findings(out: Path, findings: Any) -> None:
    """Findings as CSV (one row each, the columns of FINDING_COLUMNS) or a JSON list, written atomically."""
    import json

    import pandas as pd

    from etl.atomic import atomic_path

    rows = [{k: f.get(k) for k in FINDING_COLUMNS} for f in findings]
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".json":
            tmp.write_text(json.dumps(rows, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        else:
            frame = pd.DataFrame(rows, columns=list(FINDING_COLUMNS))
            frame["row"] = frame["row"].astype("Int64")
            frame.to_csv(tmp, index=False, lineterminator="\n")
    typer.echo(f"wrote {len(rows)} finding(s) to {out}", err=True)
