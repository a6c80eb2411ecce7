"""`mamamia review prepare | serve | export | agreement`: visual QC of the automatic masks."""

from __future__ import annotations

from pathlib import Path

import typer


def register(review: typer.Typer) -> None:
    """Add the rating commands to the `review` group."""

    @review.command("prepare")
    def prepare(
        source: Path = typer.Argument(..., help="Staged directory or release (cases with an automatic mask)."),
        cache: Path | None = typer.Option(None, "--cache", help="Folder for the rendered views (default: "
                                          "STAGED/review, or RELEASE.review beside a release, which is checksummed)."),
        definition: Path | None = typer.Option(None, "--definition", help="Release definition YAML for a staged "
                                               "directory's naming (default: shipped v1)."),
        jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Worker processes."),
        scheduler: str | None = typer.Option(None, "--scheduler", help="dask.distributed scheduler address."),
    ) -> None:
        """Render each case's six views (post-contrast and subtraction x axial, coronal, sagittal) into a cache.

        The slices go through the mask's largest component; the cache is keyed by the sha256 of image + mask.
        An unchanged case is skipped, a changed mask is re-rendered, so a killed run resumes."""
        from etl.errors import ValidationFailed
        from etl.review.prepare import prepare_views

        res = prepare_views(source, cache=cache, jobs=jobs, scheduler=scheduler, definition=definition)
        typer.echo(f"rendered {len(res.rendered)} case(s), {len(res.skipped)} already current; views in {res.cache}")
        if res.failed:
            pid, why = res.failed[0]
            raise ValidationFailed(f"{len(res.failed)} case(s) could not be rendered (the others are done); first: {why}",
                                   pid)

    @review.command("serve")
    def serve(
        source: Path = typer.Argument(..., help="Staged directory or release."),
        db: Path = typer.Option(..., "--db", help="SQLite ratings file (created if missing; share it between raters)."),
        rater: str = typer.Option(..., "--rater", help="Your name, recorded with every rating."),
        blind: bool = typer.Option(False, "--blind", help="Hide what could bias a rater: method, Dice, volume, "
                                   "other raters' ratings."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but loopback "
                                 "requires the printed access token."),
        port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port (0: any free port)."),
        cache: Path | None = typer.Option(None, "--cache", help="Rendered views folder (as for prepare)."),
        definition: Path | None = typer.Option(None, "--definition", help="Release definition YAML (naming)."),
    ) -> None:
        """Serve the rating app: one case per page, keys 1-4 rate (Good, Acceptable, Poor, Missed), n/p move.

        Opens at your first unrated case; every rating is committed before the page moves on."""
        from etl.review.app import create_app, url_for
        from etl.review.server import bind, is_loopback, new_token, serve_forever

        token = None if is_loopback(host) else new_token()
        app = create_app(source, db, rater, blind=blind, token=token, cache=cache, definition=definition)
        sock = bind(host, port)
        state = app.state.review
        url = url_for(host, sock.getsockname()[1], token)
        typer.echo(f"reviewing {len(state.cases)} case(s) from {state.cases.root} as {state.rater}"
                   f"{' (blind)' if blind else ''}; ratings in {db}")
        typer.echo(f"open {url}", err=False)
        typer.echo("press Ctrl-C to stop (every answered rating is already saved)")
        serve_forever(app, sock)

    @review.command("export")
    def export(
        db: Path = typer.Option(..., "--db", help="SQLite ratings file."),
        out: Path = typer.Option(..., "--out", help="quality_scores.csv or .parquet"),
        history: bool = typer.Option(False, "--history", help="Every rating ever given, not only the latest per "
                                     "case and rater."),
        anonymize: bool = typer.Option(False, "--anonymize", help="Rater names as rater_1, rater_2... "
                                       "(in order of first rating)."),
    ) -> None:
        """Write the ratings as .csv or .parquet, one row per case and rater (the latest) unless --history.

        Columns: patient_id, rater, score (good|acceptable|poor|missed), comment, rated_at (UTC), mask_sha256,
        app_version."""
        from etl.review.store import export_ratings, open_store, ratings_frame

        with open_store(db, create=False) as store:
            path = export_ratings(store, out, all_history=history, anonymize=anonymize)
            n = len(ratings_frame(store, history))
        typer.echo(f"{n} rating(s) -> {path}")

    @review.command("agreement")
    def agreement(
        ratings: Path = typer.Argument(..., help="SQLite ratings file or an export (.csv/.parquet)."),
        fmt: str = typer.Option("text", "--format", help="text | json"),
    ) -> None:
        """Cohen's kappa per rater pair: four classes and Good vs corrections needed, confusion, counts.

        Uses the latest rating per case and rater, on the cases both raters rated."""
        import json

        from etl.errors import ConfigError
        from etl.review.agreement import agreement as compute, agreement_text
        from etl.review.store import read_ratings

        if fmt not in ("text", "json"):
            raise ConfigError(f"--format must be text or json, got {fmt!r}", "--format")
        result = compute(read_ratings(ratings))
        if fmt == "json":
            typer.echo(json.dumps(result, indent=1))
        else:
            typer.echo(agreement_text(result).rstrip("\n"))
