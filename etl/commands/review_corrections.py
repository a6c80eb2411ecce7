"""`mamamia review assign | import | figures`: expert corrections of the automatic masks."""

from __future__ import annotations

from pathlib import Path

import typer


def register(review: typer.Typer) -> None:
    """Add the correction commands to the `review` group."""

    @review.command("assign")
    def assign_cmd(
        source: Path = typer.Argument(..., help="Staged directory or release with automatic masks."),
        experts: str = typer.Option(..., "--experts", help="Expert names, comma-separated (alice,bob), or a "
                                    "count (3 -> expert_01..expert_03); one package folder each."),
        out: Path = typer.Option(..., "--out", "-o", help="Packages folder to create (must not exist or be empty)."),
        per_expert: int | None = typer.Option(None, "--per-expert", min=1, help="At most K cases per expert (a "
                                              "stratified subset when there are more); default: all cases."),
        db: Path | None = typer.Option(None, "--db", help="Review ratings database (SQLite): the latest rating of "
                                       "each case is its quality stratum; unrated cases are a stratum of their own."),
        seed: int = typer.Option(0, "--seed", help="Same seed, same inputs: same assignment."),
        all_cases: bool = typer.Option(False, "--all", help="Also cases that already have an expert mask."),
        definition: Path | None = typer.Option(None, "--definition", help="Release definition for a staged "
                                               "directory's file names (default: the shipped v1)."),
    ) -> None:
        """Blinded, balanced work packages: per expert the pre- and first post-contrast phases and the mask to
        edit, a manifest with checksums and the annotation rules; assignments.csv records who got what."""
        from etl.errors import ValidationFailed
        from etl.review.assign import UNRATED, CaseRecord, assign, balance_table, expert_names
        from etl.review.corrections import latest_quality
        from etl.review.packages import candidates, write_packages

        names = expert_names(experts)
        found = candidates(source, include_corrected=all_cases, definition=definition)
        for pid, why in found.unusable:
            typer.echo(f"skipped {pid}: {why}", err=True)
        if not found.eligible:
            what = "no case with an automatic mask" if not found.has_expert else \
                f"all {len(found.has_expert)} case(s) with an automatic mask already have an expert mask (--all to reassign)"
            raise ValidationFailed(f"nothing to assign: {what}", str(source))
        quality = latest_quality(db)
        records = [CaseRecord(pid, ds, quality.get(pid) or UNRATED) for pid, ds in found.eligible]
        plan = assign(records, names, seed=seed, per_expert=per_expert)
        res = write_packages(found.layout, plan, out, seed)
        for pid, why in res.skipped:
            typer.echo(f"error: not packaged: {why} ({pid})", err=True)
        written = {pid for pids in res.assigned.values() for pid in pids}
        table = balance_table([a for a in plan if a.patient_id in written], names)
        cols = list(table[0]) if table else []
        widths = {c: max(len(c), *(len(str(r[c])) for r in table)) for c in cols}
        typer.echo("  ".join(c.rjust(widths[c]) if i else c.ljust(widths[c]) for i, c in enumerate(cols)))
        for row in table:
            typer.echo("  ".join(str(row[c]).rjust(widths[c]) if i else str(row[c]).ljust(widths[c])
                                 for i, c in enumerate(cols)))
        left = len(found.eligible) - len(plan)
        typer.echo(f"assigned {len(written)} case(s) to {len(names)} expert(s) (seed {seed})"
                   + (f"; {left} left for a later round" if left else "")
                   + (f"; {len(found.has_expert)} already have an expert mask" if found.has_expert else ""))
        typer.echo(str(res.out))
        if res.skipped:
            raise typer.Exit(1)

    @review.command("import")
    def import_cmd(
        package: Path = typer.Argument(..., help="One expert's package folder (with manifest.csv)."),
        into: Path = typer.Option(..., "--into", help="Staged directory to write segmentations/expert/ into."),
        expert: str = typer.Option(..., "--expert", help="The expert who corrected this package."),
        replace: bool = typer.Option(False, "--replace", help="Replace existing expert masks (the old ones are "
                                     "kept under a versioned name in segmentations/expert_replaced/)."),
        db: Path | None = typer.Option(None, "--db", help="Review ratings database: the latest rating of each "
                                       "case is recorded with its correction."),
        definition: Path | None = typer.Option(None, "--definition", help="Release definition for the staged "
                                               "directory's file names (default: the shipped v1)."),
    ) -> None:
        """Check each corrected mask (grid, binary, empty only if marked no_lesion), write it atomically as the
        expert mask and record the correction (volumes added/removed, Dice, HD95, MSD) in
        segmentations/corrections.parquet. Each fault is one line; the other cases still import; exit 1."""
        from etl.contracts import MANIFEST
        from etl.errors import InputUnreadable
        from etl.layout import Layout
        from etl.review.corrections import corrections_path, import_package

        layout = Layout.from_definition(into, definition)
        if not layout.folder("image").is_dir():
            raise InputUnreadable(f"not a staged directory: no {layout.folder('image').name}/ folder", str(into))
        if (into / MANIFEST).is_file():
            from etl.errors import ConfigError

            raise ConfigError("is a built release (checksummed); import into the staged directory and rebuild the "
                              "release", str(into))
        res = import_package(package, layout, expert, replace=replace, db=db)
        for note in res.notes:
            typer.echo(f"note: {note}")
        for where, what in res.faults:
            typer.echo(f"error: {what} ({where})", err=True)
        typer.echo(f"imported {len(res.imported)} mask(s) from {package.name} for {expert}"
                   + (f", {len(res.already)} already imported" if res.already else "")
                   + (f", {len(res.faults)} fault(s)" if res.faults else "")
                   + f"; statistics in {corrections_path(layout)}")
        if res.faults:
            raise typer.Exit(1)

    @review.command("figures")
    def figures_cmd(
        source: Path = typer.Argument(..., help="Staged directory or release with segmentations/corrections.parquet."),
        out: Path = typer.Option(..., "--out", "-o", help="Folder for the PNG figures."),
        cases: bool = typer.Option(True, "--cases/--no-cases", help="Also one correction overlay per case."),
    ) -> None:
        """Correction figures: per case the automatic (yellow) and expert (red) contours with the voxels added
        (green) and removed (pink); Dice and HD95 per quality class; volume added and removed."""
        from etl.review.figures import write_figures

        written = write_figures(source, out, per_case=cases)
        typer.echo(f"wrote {len(written)} figure(s) to {out}")
