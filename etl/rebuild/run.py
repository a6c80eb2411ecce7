"""Run the stages of a rebuild in order through the real command line, skipping what the ledger says is done.

Each stage's commands run in this process (``etl.cli.run``), exactly as a curator would type them. Before a
stage runs, its state is assessed again (an upstream stage may just have changed its inputs); after it runs,
the ledger records its command, input and output fingerprints, case counts and time. A failed stage stops
the chain; the caller prints the status table. Nothing is decided by parsing a command's output.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.errors import ConfigError, InputUnreadable
from etl.rebuild import cases as case_counts
from etl.rebuild.ledger import Ledger
from etl.rebuild.plan import Stage, assess, expand, load_table, overlaps, stage_names
from etl.rebuild.spec import RebuildSpec, load_spec
from etl.types import StrPath

log = logging.getLogger("etl.rebuild")


@dataclass
class StageStatus:
    name: str
    title: str
    state: str  # done (skipped: up to date) | ran | partial | failed | pending | not selected | absent
    reason: str = ""
    expected: int | None = None
    done: int | None = None
    seconds: float | None = None
    commands: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def failed_cases(self) -> int | None:
        """Cases of a stage that ran and did not finish them; 0 for a stage that finished."""
        if self.expected is None or self.done is None:
            return None
        if self.state in ("failed", "partial"):
            return max(0, self.expected - self.done)
        return 0 if self.state in ("ran", "done") else None


@dataclass
class RebuildResult:
    spec: RebuildSpec
    stages: list[StageStatus]
    dry_run: bool = False
    failed: str | None = None  # "stage X failed: why" of the stage that stopped the chain
    failed_where: str | None = None  # the path to look at (the missing input, the stage log, the ledger)
    missing: list[tuple[str, Path]] = field(default_factory=list)  # (stage, input) missing before anything ran
    interrupted: bool = False  # Ctrl-C during a stage (exit 130, as every command)

    @property
    def ok(self) -> bool:
        return self.failed is None

    @property
    def release(self) -> Path:
        return Path(self.spec.variables["release"])


def select(names: list[str], first: str | None, last: str | None) -> set[str]:
    """The stages between --from and --until (inclusive), by name."""
    for opt, value in (("--from", first), ("--until", last)):
        if value is not None and value not in names:
            raise ConfigError(f"unknown stage {value!r}; stages: {', '.join(names)}", opt)
    lo = names.index(first) if first else 0
    hi = names.index(last) if last else len(names) - 1
    if lo > hi:
        raise ConfigError(f"--from {first} comes after --until {last}", "--from")
    return set(names[lo:hi + 1])


def raise_missing(missing: list[tuple[str, Path]]) -> None:
    """One line naming the first stage and path (the dry-run plan lists them all)."""
    stage, path = missing[0]
    more = f"; {len(missing) - 1} more input(s) missing, see --dry-run" if len(missing) > 1 else ""
    raise InputUnreadable(f"stage {stage}: input missing{more}", str(path))


def _produced_by(path: Path, earlier: list[Stage]) -> Stage | None:
    return next((s for s in reversed(earlier) for o in s.outputs if overlaps(path, o.path)), None)


def plan(spec: RebuildSpec, first: str | None = None,
         last: str | None = None) -> tuple[list[Stage], list[tuple[str, Path]]]:
    """Stages with their state as things are now, and the (stage, path) of every input that is missing and that
    no earlier stage of this rebuild produces (nothing may run then: better now than after a day of downloads)."""
    stages = expand(spec)
    chosen = select([s.name for s in stages], first, last)
    ledger = Ledger(spec.ledger_path, spec.work)
    running: list[Stage] = []  # earlier stages that will run in this rebuild
    missing: list[tuple[str, Path]] = []
    for st in stages:
        if not st.declared:
            continue
        if st.name not in chosen:
            st.state, st.reason = "not selected", ""
            continue
        upstream = None
        for decl in st.inputs:
            upstream = upstream or _produced_by(decl.path, running)
            if _produced_by(decl.path, running) is None and not decl.optional and not decl.path.exists():
                missing.append((st.name, decl.path))
        if first is not None:  # --from: redo the named stage and every later one
            st.state, st.reason = "run", f"--from {first}"
        elif upstream is not None:
            st.state, st.reason = "run", f"after {upstream.name}"
        else:
            st.state, st.reason = assess(st, ledger)
        if st.state == "run":
            running.append(st)
    return stages, missing


@contextlib.contextmanager
def scoped_env(**values: str) -> Iterator[None]:
    """Environment variables set for the block only (the stages run in this process)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_command(argv: list[str], log_file: Path | None) -> int:
    from etl.cli import run as cli

    if log_file is None:
        return cli(argv)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        print(f"\n$ mamamia {' '.join(argv)}", flush=True)
        return cli(argv)


def _fingerprints(decls: list[Any], ledger: Ledger) -> dict[str, Any]:
    return {ledger.key(d.path): d.fingerprint() for d in decls}


def run_rebuild(definition: StrPath, work: StrPath,
                overrides: dict[str, Any] | None = None, jobs: int = 1, scheduler: str | None = None,
                first: str | None = None, last: str | None = None, dry_run: bool = False,
                echo: Callable[[str], None] = print, log_file: StrPath | None = None,
                label: str = "rebuild") -> RebuildResult:
    """Run (or with ``dry_run`` only plan) every declared stage; returns each stage's status.

    ``overrides`` is merged over the definition's ``rebuild:`` section (the demo passes its stand-ins'
    addresses, generated manifest and spreadsheets this way). Missing inputs and configuration errors raise
    before anything runs; a failed stage stops the chain and is reported in the result. ``echo`` gets one
    ``[label] ...`` line per stage; ``log_file`` collects the stages' own output (default: the terminal).
    """
    spec = load_spec(definition, work, overrides, jobs=jobs, scheduler=scheduler)
    stages, missing = plan(spec, first, last)
    statuses = {s.name: StageStatus(s.name, s.title, s.state, s.reason, commands=[c.text for c in s.commands])
                for s in stages}
    result = RebuildResult(spec, list(statuses.values()), dry_run=dry_run, missing=missing)
    for line in spec.notes:
        echo(f"[{label}] note: {line}")
    if dry_run:
        for st in stages:
            status = statuses[st.name]
            if st.declared and st.state != "not selected":
                counts = case_counts.count(st.cases, spec)
                status.expected, status.done = counts["expected"], counts["done"]
                if st.name == "segment" and st.state == "run":
                    status.note = spec.variables["segment_note"]() or ""
        return result
    if missing:
        raise_missing(missing)
    spec.work.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(spec.ledger_path, spec.work)
    logpath = Path(log_file).resolve() if log_file else None
    ran_upstream: list[Stage] = []
    with scoped_env(MAMAMIA_WORK=str(spec.work)):
        for planned in stages:
            status = statuses[planned.name]
            if planned.state in ("absent", "not selected"):
                continue
            # expanded again now: lazy values (the segment model an earlier stage downloaded) are read at run time
            st = expand(spec, [raw for raw in load_table() if raw["name"] == planned.name])[0]
            status.commands = [c.text for c in st.commands]
            if planned.reason.startswith("--from"):
                state, why = "run", planned.reason
            else:
                state, why = assess(st, ledger)
            if state == "done":
                counts = case_counts.count(st.cases, spec)
                status.state, status.reason = "done", why
                status.expected, status.done = counts["expected"], counts["done"]
                status.seconds = (ledger.get(st.name) or {}).get("seconds")
                echo(f"[{label}] {st.name}: up to date, skipped")
                continue
            absent = next((d.path for d in st.inputs if not d.optional and not d.path.exists()), None)
            if absent is not None:  # an upstream stage ran but did not produce it (e.g. a file Synapse lacks)
                status.state, status.reason = "failed", f"input missing: {ledger.key(absent)}"
                result.failed, result.failed_where = f"stage {st.name}: input missing", str(absent)
                _pending(stages, planned, statuses)
                break
            note: str | None = spec.variables["segment_note"]() if st.name == "segment" else None
            if note:
                status.note = note
                echo(f"[{label}] note: {note}")
            echo(f"[{label}] {st.name}: {st.title} ({why}) ...")
            start = time.perf_counter()
            entry: dict[str, Any] = {"status": "running", "title": st.title, "reason": why,
                                     "started": _now(), "commands": [c.fingerprint for c in st.commands],
                                     "inputs": _fingerprints(st.inputs, ledger)}
            ledger.record(st.name, entry)
            outcome, failure = "ok", None
            for cmd in st.commands:
                code = _run_command(cmd.argv, logpath)
                if code != 0:
                    if cmd.allow_failure:
                        outcome = "partial"
                        status.note = f"`{cmd.text}` exited {code} (optional; rerun to retry)"
                        echo(f"[{label}] note: {status.note}")
                        continue
                    outcome = "interrupted" if code == 130 else "failed"
                    result.interrupted = code == 130
                    failure = f"`{cmd.text}` exited {code}"
                    break
            seconds = time.perf_counter() - start
            counts = case_counts.count(st.cases, spec)
            entry.update(status=outcome, seconds=round(seconds, 3), finished=_now(),
                         outputs=_fingerprints(st.outputs, ledger), cases=counts)
            ledger.record(st.name, entry)
            status.state = {"ok": "ran", "partial": "partial"}.get(outcome, "failed")
            status.reason, status.seconds = why, seconds
            status.expected, status.done = counts["expected"], counts["done"]
            ran_upstream.append(st)
            if failure:
                result.failed = f"stage {st.name} failed: {failure}"
                result.failed_where = str(logpath or spec.ledger_path)
                echo(f"[{label}] {st.name}: FAILED after {seconds:.1f} s: {failure}"
                     + (f" (its output: {logpath})" if logpath else ""))
                _pending(stages, planned, statuses)
                break
            echo(f"[{label}] {st.name}: done in {seconds:.1f} s")
    return result


def _pending(stages: list[Stage], stopped: Stage, statuses: dict[str, StageStatus]) -> None:
    """Selected stages after the one that stopped the chain did not run."""
    for later in stages[stages.index(stopped) + 1:]:
        if statuses[later.name].state not in ("absent", "not selected"):
            statuses[later.name].state, statuses[later.name].reason = "pending", f"after {stopped.name}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def status_table(result: RebuildResult) -> str:
    """Stage, state, cases done/failed, seconds: one line per stage of the table."""
    header = ("stage", "state", "cases done", "failed", "seconds", "why")
    rows = []
    for s in result.stages:
        done = "-" if s.done is None else str(s.done)
        if s.expected is not None:
            done += f"/{s.expected}"
        failed = "-" if s.failed_cases is None else str(s.failed_cases)
        secs = "-" if s.seconds is None else f"{s.seconds:.1f}"
        state = {"done": "up to date", "run": "would run"}.get(s.state, s.state)
        why = "; ".join(x for x in (s.reason, s.note) if x)
        rows.append((s.name, state, done, failed, secs, why))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for r in [header, *rows]:
        cells = [str(c).ljust(w) if i in (0, 1) else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells) + ("  " + r[-1] if r[-1] else ""))
    return "\n".join(line.rstrip() for line in lines)


def plan_text(result: RebuildResult) -> str:
    """The dry-run's plan: the status table, then the commands of every stage that would run."""
    spec = result.spec
    v = spec.variables
    n = case_counts.expected("manifest", spec)
    out = [f"rebuild plan: {spec.name} {spec.version} ({spec.definition}) in {spec.work}; "
           f"{n} case(s) in the manifest {v['manifest']}", status_table(result), "", "would run:"]
    todo = [s for s in result.stages if s.state == "run"]
    for s in todo:
        out += [f"  [{s.name}] {c}" for c in s.commands]
    if not todo:
        out.append("  nothing: every selected stage is up to date")
    if result.missing:
        out += ["", "missing inputs (nothing can run until they are there):"]
        out += [f"  [{stage}] {path}" for stage, path in result.missing]
    return "\n".join(out)


__all__ = ["RebuildResult", "StageStatus", "plan", "plan_text", "run_rebuild", "select", "stage_names", "status_table"]
