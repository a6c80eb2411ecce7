"""`mamamia cache`: audit, list and export the download cache."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

cache_app = typer.Typer(help="Inspect, verify and export the download cache.", no_args_is_help=True)


@cache_app.command("verify")
def verify(
    cache: Path = typer.Option(..., "--cache", "-c", help="Cache directory."),
) -> None:
    """Re-hash every object and check every ledger row; exit 1 naming each bad object."""
    from etl.extract.cache import Cache

    c = Cache(cache, create=False, readonly=True)
    rep = c.verify()
    typer.echo(f"cache {cache}: {rep.checked} object(s), {rep.bytes / 1e6:.1f} MB re-hashed, {len(rep.bad)} bad, "
               f"{len(rep.unrecorded)} complete but unrecorded, {rep.stale_tmp} leftover temp file(s)")  # fmt: skip
    if rep.bad:
        typer.echo(f"error: {len(rep.bad)} bad object(s) in the cache:", err=True)
        for what, why in rep.bad:
            typer.echo(f"  {what}: {why}", err=True)
        raise typer.Exit(1)


@cache_app.command("ls")
def ls(
    cache: Path = typer.Option(..., "--cache", "-c", help="Cache directory."),
    source: str = typer.Option("all", "--source", help="What to list: tcia, synapse or all."),
    fmt: str = typer.Option("table", "--format", help="table or csv."),
) -> None:
    """List the cached TCIA series and Synapse files with their sizes and hashes."""
    import csv
    import sys

    from etl.errors import UsageError
    from etl.extract.cache import Cache

    if source not in ("tcia", "synapse", "all") or fmt not in ("table", "csv"):
        raise UsageError("--source must be tcia|synapse|all and --format table|csv", "options")
    c = Cache(cache, create=False, readonly=True)
    rows: list[list[str]] = []
    if source in ("tcia", "all"):
        for s in c.all_series():
            rows.append(["tcia", s.collection, s.patient_id, s.series_uid, str(s.n_files), str(s.bytes),
                         "md5" if s.md5_checked else "-", s.completed_at])  # fmt: skip
    if source in ("synapse", "all"):
        for r in c.synapse_files():
            rows.append(["synapse", r.root_id, r.relpath, f"{r.syn_id}.{r.version}", "1", str(r.size), r.md5, r.completed_at])
    header = ["source", "collection/root", "patient/path", "series/entity", "files", "bytes", "md5", "completed_at"]
    if fmt == "csv":
        from etl.safetext import csv_cell

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(header)
        w.writerows([csv_cell(v) for v in row] for row in rows)
        return
    st = c.stats()
    for row in rows:
        typer.echo("  ".join(row))
    typer.echo(f"{st['tcia_series']} series ({st['tcia_files']} files), {st['synapse_files']} Synapse file(s), "
               f"{st['objects']} object(s), {st['bytes'] / 1e6:.1f} MB")  # fmt: skip


@cache_app.command("export")
def export(
    cache: Path = typer.Option(..., "--cache", "-c", help="Cache directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m", help="Manifest CSV: export its cases' DICOM as "
                                            "OUT/<patient_id>/<SeriesInstanceUID>/*.dcm (input of `mamamia convert`)."),
    synapse_root: Optional[str] = typer.Option(None, "--synapse", help="Export the cached Synapse files of this root id "
                                               "('all' for every root) at their relative paths."),
    include: list[str] = typer.Option([], "--include", "-i", help="With --synapse: only relative paths matching a glob."),
    series_only: bool = typer.Option(False, "--series-only", help="With --manifest: only each case's tcia_series_uid."),
    exclusions: Optional[Path] = typer.Option(None, "--exclusions", help="Extra exclusions CSV (patient_id, reason)."),
    link: bool = typer.Option(False, "--link", help="Hard-link files instead of copying (same filesystem; treat read-only)."),
    keep_existing: bool = typer.Option(False, "--keep-existing", help="With --synapse: never replace a file already in "
                                       "OUT whose bytes differ (e.g. expert masks imported since); list them."),
) -> None:
    """Materialize cached downloads as plain folders; exit 1 if a manifest case has nothing cached."""
    from etl.errors import UsageError
    from etl.extract.export import export_synapse, export_tcia

    if (manifest is None) == (synapse_root is None):
        raise UsageError("give exactly one of --manifest or --synapse", "options")
    if manifest is not None:
        res = export_tcia(cache, manifest, out, series_only=series_only, exclusions=exclusions, link=link)
        typer.echo(f"exported {len(res.cases)} case(s), {res.files} file(s), {res.bytes / 1e6:.1f} MB to {out}; "
                   f"{len(res.excluded)} excluded")  # fmt: skip
    else:
        root = None if synapse_root == "all" else synapse_root
        res = export_synapse(cache, out, root_id=root, include=list(include), link=link, keep_existing=keep_existing)
        typer.echo(f"exported {res.files} file(s), {res.bytes / 1e6:.1f} MB to {out}; {res.unchanged} already there")
        if res.kept:
            typer.echo(f"kept {len(res.kept)} existing file(s) that differ from the download (--keep-existing): "
                       f"{', '.join(res.kept[:5])}{' ...' if len(res.kept) > 5 else ''}", err=True)
    if not res.ok:
        typer.echo(f"error: {len(res.missing)} item(s) not in the cache:", err=True)
        for what, why in res.missing.items():
            typer.echo(f"  {what}: {why}", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `mamamia cache ...` to the root app."""
    app.add_typer(cache_app, name="cache")
