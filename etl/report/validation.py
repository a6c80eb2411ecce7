"""Validation section (and the Overview's status line): the same checks `mamamia validate` and `mamamia
release verify` run, grouped by rule with counts and the first examples.

A table file is validated exactly as `mamamia validate FILE` does (its raw values); a release is verified as
`mamamia release verify` does (checksums unless told otherwise, schema, files, orientation, PHI) and its
table's schema warnings are listed too, since verify reports errors only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from etl.report.model import Block, Section, Table, cell, config
from etl.report.source import ReportSource


@dataclass
class Status:
    """What was checked and what came out, for the Overview."""

    ok: bool
    text: str
    checks: list[str] = field(default_factory=list)


def schema_report(src: ReportSource) -> Any:
    """A table file as `mamamia validate` reads it (raw values); a release's Parquet as `release verify` does."""
    from etl.release.tableio import base_frame, read_table
    from etl.validate.schema import validate_frame

    if src.raw is not None:
        return validate_frame(src.raw)
    assert src.root is not None
    return validate_frame(base_frame(read_table(src.root / src.table_name)))


def release_problems(src: ReportSource, checksums: bool) -> list[Any]:
    from etl.release.verify import verify_release

    assert src.root is not None
    return verify_release(src.root, checksums=checksums)


def section(src: ReportSource, *, verify: str = "full") -> tuple[Section, Status]:
    """``verify``: ``full`` (release verify with checksums), ``quick`` (without re-hashing), ``build`` (the
    report is written by `release build`, which verifies the release before publishing it), ``none``."""
    limit = int((config().get("validation") or {}).get("examples_per_rule", 5))
    sec = Section("validation", "Validation")
    report = schema_report(src)
    counts = report.counts()
    schema_line = (f"schema: {'valid' if report.valid else 'INVALID'}, {report.n_rows} rows, "
                   f"{report.n_errors} errors, {report.n_warnings} warnings")
    status = Status(report.valid, schema_line, ["schema (49 variables, table rules)"])
    if src.kind == "release" and verify in ("full", "quick"):
        problems = release_problems(src, checksums=verify == "full")
        checks = (["checksums"] if verify == "full" else []) + ["schema", "splits", "files", "NIfTI headers and orientation",
                                                                "metadata", "PHI"]
        status = Status(not problems, ("release verify: verifies" if not problems else
                                       f"release verify: {len(problems)} problem(s)") + f" ({', '.join(checks)})"
                        + ("" if verify == "full" else "; checksums not re-hashed"), checks)
        sec.blocks.append(_problems_block(problems, limit))
    elif src.kind == "release" and verify == "build":
        status = Status(True, "verified by `release build` before publishing (checksums, schema, splits, files, "
                        "NIfTI orientation, metadata, PHI); run `mamamia release verify` to re-check a copy",
                        ["build verify"])
    elif src.kind == "release":
        status = Status(report.valid, schema_line + "; release verify not run (run `mamamia release verify`)",
                        ["schema"])
    sec.intro = ("Findings of " + ("`mamamia release verify` and " if src.kind == "release" and verify in ("full", "quick")
                                    else "") + "`mamamia validate` on this input, grouped by rule, with the first "
                 f"{limit} examples of each. Rows are 0-based table positions.")
    sec.blocks.append(_schema_block(report, counts, limit))
    return sec, status


def _problems_block(problems: list[Any], limit: int) -> Block:
    by_check: dict[str, list[Any]] = defaultdict(list)
    for p in problems:
        by_check[p.check].append(p)
    rows = [[cell(check, css="label"), cell(len(items), check=check, count=len(items)),
             cell("\n".join(f"{p.message} ({p.where})" for p in items[:limit]), css="examples")]
            for check, items in sorted(by_check.items())]
    block = Block(title="Release verify", table=Table(["check", "problems", "first examples"], rows, css="findings")
                  if rows else None)
    if not rows:
        block.notes.append("The release verifies: no problem found.")
    return block


def _schema_block(report: Any, counts: dict[str, dict[str, int]], limit: int) -> Block:
    examples: dict[tuple[str, str], list[str]] = defaultdict(list)
    for v in report.iter_violations():
        key = (v.severity, v.rule)
        if len(examples[key]) < limit:
            examples[key].append(v.describe().split(": ", 1)[1].removesuffix(f" [{v.rule}]"))
        if all(len(examples[(s, r)]) >= limit for s in counts for r in counts[s]):
            break
    rows = []
    for severity in ("error", "warning"):
        for rule, n in counts.get(severity, {}).items():
            rows.append([cell(severity, css=f"sev-{severity}"), cell(rule, css="label"),
                         cell(n, rule=rule, severity=severity, count=n),
                         cell("\n".join(examples[(severity, rule)]), css="examples")])
    block = Block(title=f"Schema: {report.n_errors} errors, {report.n_warnings} warnings in {report.n_rows} rows",
                  table=Table(["severity", "rule", "findings", "first examples"], rows, css="findings") if rows else None)
    if not rows:
        block.notes.append("No schema finding.")
    return block
