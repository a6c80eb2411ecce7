"""`mamamia release build | verify | diff`: make, check and compare versioned dataset releases."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the `release` command group to the root app."""
    sub = typer.Typer(
        help="Build a versioned, checksummed release from staged data; verify it; compare two releases.",
        no_args_is_help=True,
    )

    @sub.command("build")
    def build(
        definition: Path = typer.Argument(..., help="Release definition YAML (e.g. release/v1.yaml)."),
        out: Path = typer.Option(..., "--out", "-o", help="Release directory to create (built in OUT.partial/, "
                                 "then renamed; an existing release there is replaced only on success)."),
        staged: list[Path] = typer.Option(None, "--staged", help="Staged directory (repeatable); replaces "
                                          "sources.staged of the definition."),
        table: Path = typer.Option(None, "--table", help="49-variable table (.parquet/.xlsx/.csv); replaces sources.table."),
        previous: Path = typer.Option(None, "--previous", help="Previous release to diff against (CHANGELOG.md); "
                                      "replaces `previous:` of the definition."),
        split_file: Path = typer.Option(None, "--split", help="Split CSV (patient_id, split, fold), e.g. from "
                                        "`mamamia split`, to reproduce instead of drawing one; replaces split.file."),
        only_staged: bool = typer.Option(False, "--only-staged", help="Release only table rows whose images are "
                                         "staged (same as `cases: staged`); the rest are listed in provenance."),
        link: bool = typer.Option(False, "--link", help="Hard-link NIfTIs from the staged directory instead of "
                                  "copying (same bytes, no extra disk; falls back to copying across file systems)."),
        no_verify: bool = typer.Option(False, "--no-verify", help="Skip verifying the built release before the rename."),
        report: bool = typer.Option(False, "--report", help="Also write report.html, the self-contained data card "
                                    "(`mamamia report`), listed in SHA256SUMS."),
        jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Cases copied and hashed in parallel by local "
                                 "processes (same bytes as one job)."),
        scheduler: str | None = typer.Option(None, "--scheduler", help="dask.distributed scheduler address "
                                             "(tcp://host:8786); copies and hashes the cases on that cluster "
                                             "instead (its workers must see the staged directories and --out "
                                             "at the same paths)."),
    ) -> None:
        """Build a release directory: tables, images, masks, splits, data card, provenance, SHA256SUMS."""
        import time

        from etl.release.build import build_release
        from etl.release.definition import load_definition

        start = time.monotonic()
        if not definition.is_file():  # unreadable input: exit 2, like every command
            from etl.errors import InputUnreadable

            raise InputUnreadable("release definition not found", str(definition))
        defn = load_definition(definition, staged=staged or None, table=table, previous=previous,
                               cases="staged" if only_staged else None, split_file=split_file)
        res = build_release(defn, out, link=link, verify=not no_verify, report=report, jobs=jobs,
                            scheduler=scheduler)
        typer.echo(
            f"built {defn.release_id}: {res.cases} cases, {res.images} images, {res.expert_masks} expert and "
            f"{res.automatic_masks} automatic masks, {res.files} files, {res.size_bytes / 1e6:.1f} MB "
            f"in {time.monotonic() - start:.1f} s"
        )
        if res.dropped:
            typer.echo(f"left out {len(res.dropped)} table row(s) without staged images (see provenance.json)")
        if res.imaging_overrides:
            typer.echo("imaging values taken from staged JSON: "
                       + ", ".join(f"{k} {v}" for k, v in res.imaging_overrides.items()))
        if report:
            typer.echo(f"report: {res.path / 'report.html'}")
        typer.echo(str(res.path))

    @sub.command("verify")
    def verify(
        release: Path = typer.Argument(..., help="Release directory."),
        fmt: str = typer.Option("text", "--format", help="text or json."),
        no_checksums: bool = typer.Option(False, "--no-checksums", help="Skip re-hashing every file (faster)."),
        no_phi: bool = typer.Option(False, "--no-phi", help="Skip the PHI scan."),
        phi_from_dicom: list[Path] = typer.Option(None, "--phi-from-dicom", help="Folder of source DICOM files "
                                                  "(repeatable): their identifying values (PatientName, "
                                                  "PatientBirthDate, AccessionNumber, ...) must not appear in the release."),
    ) -> None:
        """Check checksums, schema, files vs rows, NIfTI orientation and PHI; exit 1 naming each problem."""
        from etl.errors import ConfigError
        from etl.release.verify import problems_json, verify_release

        if fmt not in ("text", "json"):
            raise ConfigError(f"unknown format {fmt!r}; use text or json", "--format")
        values: dict[str, str] = {}
        for folder in phi_from_dicom or []:
            if not folder.is_dir():
                from etl.errors import InputUnreadable

                raise InputUnreadable("DICOM folder not found", str(folder))
            from etl.release.phi import source_values

            values.update(source_values(folder))
        if not release.is_dir():  # unreadable input (exit 2); a damaged release is a finding (exit 1)
            from etl.errors import InputUnreadable

            raise InputUnreadable("release directory not found" if not release.exists() else "not a directory",
                                  str(release))
        problems = verify_release(release, checksums=not no_checksums, phi=not no_phi, phi_values=values or None)
        if fmt == "json":
            typer.echo(problems_json(problems), nl=False)
        else:
            for p in problems:
                typer.echo(p.describe())
            typer.echo(f"{release}: " + ("release verifies" if not problems else f"{len(problems)} problem(s)"))
        if problems:
            raise typer.Exit(1)

    @sub.command("diff")
    def diff(
        a: Path = typer.Argument(..., help="Older release directory."),
        b: Path = typer.Argument(..., help="Newer release directory."),
        fmt: str = typer.Option("text", "--format", help="text or json."),
    ) -> None:
        """Cases added/removed, per-variable changed counts with examples, files added/removed/changed."""
        from etl.errors import ConfigError
        from etl.release.diff import diff_json, diff_releases, diff_text

        if fmt not in ("text", "json"):
            raise ConfigError(f"unknown format {fmt!r}; use text or json", "--format")
        d = diff_releases(a, b)
        typer.echo(diff_json(d) if fmt == "json" else diff_text(d), nl=False)

    app.add_typer(sub, name="release")
