"""`mamamia rebuild DEF.yaml --work DIR`: every stage of a release definition, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the `rebuild` command to the root app."""

    @app.command("rebuild")
    def rebuild(
        definition: Path = typer.Argument(..., help="Release definition YAML with a `rebuild:` section "
                                          "(e.g. release/v1.yaml)."),
        work: Path = typer.Option(..., "--work", "-w", help="Work folder: caches, DICOM, staged files, table, "
                                  "splits, release and the stage ledger rebuild.ledger.json."),
        first: Optional[str] = typer.Option(None, "--from", help="Start at this stage and redo it and every later "
                                            "one (earlier stages are not run; their outputs must be there). Stages: "
                                            "extract-tcia, extract-synapse, cache-export, expert-masks, convert, "
                                            "clinical, split, segment, review, release, verify."),
        last: Optional[str] = typer.Option(None, "--until", help="Stop after this stage."),
        scheduler: Optional[str] = typer.Option(None, "--scheduler", help="dask.distributed scheduler address "
                                                "(tcp://host:8786) for convert, FTV segmentation and review prepare; "
                                                "downloads stay local."),
        jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Local worker processes for the per-case stages."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (stages, what is done, what would "
                                     "run, how many cases) and run nothing."),
        manifest: Optional[Path] = typer.Option(None, "--manifest", "-m", help="Manifest CSV instead of "
                                                "rebuild.manifest."),
        api_url: Optional[str] = typer.Option(None, "--api-url", help="NBIA base URL instead of rebuild.tcia.api_url "
                                              "(a mirror, or `mamamia extract serve-nbia`)."),
        endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Synapse base URL instead of "
                                               "rebuild.synapse.endpoint."),
        source: list[str] = typer.Option([], "--source", "-s", help="NAME=PATH of a clinical source spreadsheet "
                                         "instead of rebuild.clinical.sources.NAME (repeatable)."),
        sets: list[str] = typer.Option([], "--set", help="KEY=VALUE over the definition's rebuild section, e.g. "
                                       "segment.method=ftv or release.only_staged=true (repeatable)."),
        log: Optional[Path] = typer.Option(None, "--log", help="Append every stage's own output to this file "
                                           "instead of the terminal."),
    ) -> None:
        """Run every stage the definition declares (extract, export, convert, clinical build, split, segment,
        review prepare, release build, verify), skipping stages whose outputs are complete and up to date;
        a killed rebuild resumes at the stage and case where it stopped. Prints a status table; exit 1 when a
        stage fails."""
        from etl.errors import EtlError
        from etl.rebuild.run import plan_text, raise_missing, run_rebuild, status_table
        from etl.rebuild.spec import deep_merge, parse_set

        overrides = parse_set(list(sets))
        extra: dict = {}
        if manifest is not None:
            extra["manifest"] = str(manifest.resolve())
        if api_url:
            extra["tcia"] = {"api_url": api_url}
        if endpoint:
            extra["synapse"] = {"endpoint": endpoint}
        if source:
            pairs = {}
            for text in source:
                name, eq, path = text.partition("=")
                if not eq or not name or not path:
                    raise typer.BadParameter(f"needs NAME=PATH, got {text!r}", param_hint="--source")
                pairs[name] = str(Path(path).resolve())
            extra["clinical"] = {"sources": pairs}
        overrides = deep_merge(overrides, extra)
        result = run_rebuild(definition, work, overrides=overrides, jobs=jobs, scheduler=scheduler, first=first,
                             last=last, dry_run=dry_run, echo=lambda line: typer.echo(line, err=True),
                             log_file=log)
        if dry_run:
            typer.echo(plan_text(result))
            if result.missing:
                raise_missing(result.missing)
            return
        typer.echo(status_table(result))
        if result.interrupted:
            raise typer.Exit(130)  # the CLI prints "error: interrupted"; rerun to resume
        if not result.ok:
            raise EtlError(result.failed or "a stage failed", result.failed_where)
        typer.echo(f"release: {result.release}")
