"""`mamamia clinical`: harmonize source spreadsheets into the 49-variable table, and measure concordance."""

from __future__ import annotations

from pathlib import Path

import typer


def _parse_sources(items: list[str]) -> dict[str, str]:
    from etl.errors import UsageError

    out: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise UsageError("expected NAME=PATH, e.g. duke=Clinical_and_Other_Features.xlsx", f"--source {item}")
        out[name.strip()] = path.strip()
    return out


def register(app: typer.Typer) -> None:
    """Add the `mamamia clinical` group (build, concordance) to the root app."""
    sub = typer.Typer(
        help="Clinical harmonization: source spreadsheets + mappings -> the 49-variable table.",
        no_args_is_help=True,
    )

    @sub.command("build")
    def build(
        out: Path = typer.Option(..., "--out", "-o", help="Table to write: .parquet, .xlsx (dataset_info + legend) or .csv; "
                                 "OUT.lineage.json is written next to it."),
        source: list[str] = typer.Option(
            None, "--source", "-s", help="NAME=PATH of a source spreadsheet, NAME being a mapping file "
            "(duke, ispy1); repeatable."),
        base: Path = typer.Option(None, "--base", help="Previous release table: supplies every variable no source maps "
                                  "(normalized by mappings/normalize.yaml)."),
        imaging: Path = typer.Option(None, "--imaging", help="Folder searched recursively for <patient_id>.imaging.json "
                                     "files written by `mamamia convert` (used where neither source nor base has a value)."),
        manifest: Path = typer.Option(None, "--manifest", "-m", help="Manifest CSV of the cases (default: the shipped "
                                      "manifests/mama-mia-v1.csv); rows follow its order."),
        exclusions: Path = typer.Option(None, "--exclusions", help="Extra exclusions CSV (patient_id, reason), applied "
                                        "on top of the shipped manifests/exclusions.csv."),
        mappings: Path = typer.Option(None, "--mappings", help="Folder of mapping YAML files (default: shipped mappings/)."),
    ) -> None:
        """Build the table: source mappings > --base (normalized) > --imaging JSON > null; fails if it does not validate."""
        import json
        import logging
        import time

        from etl.atomic import write_text
        from etl.errors import InputUnreadable
        from etl.tables import TABLE_SUFFIXES, write_table
        from etl.transform.clinical import Normalizer, load_collections, normalize_counts
        from etl.transform.table import build_table, cases_from_manifest

        log = logging.getLogger("etl.commands.clinical")
        start = time.monotonic()
        if out.suffix.lower() not in TABLE_SUFFIXES:  # fail before the work, not after it
            raise InputUnreadable(f"unsupported table format {out.suffix or '(none)'}; use .xlsx, .parquet or .csv", str(out))
        cases, skipped, manifest_path = cases_from_manifest(manifest, exclusions)
        folder_maps = load_collections(mappings)
        normalizer = Normalizer.load(mappings / "normalize.yaml" if mappings else None)
        result = build_table(cases, _parse_sources(source), base, imaging, folder_maps, normalizer)
        result.lineage["inputs"]["manifest"] = {"file": manifest_path.name, "cases": len(cases) + len(skipped)}
        result.lineage["excluded"] = skipped
        lineage_path = out.with_name(out.name + ".lineage.json")
        lineage_text = json.dumps(result.lineage, indent=2, sort_keys=False, default=str) + "\n"
        write_table(result.table, out)  # each write is atomic (temp file, then rename)
        write_text(lineage_path, lineage_text)
        counts = ", ".join(f"{k} {v}" for k, v in result.lineage["collections"].items())
        if base is not None:
            norm = normalize_counts(result.normalizations)
            log.info("normalized %d value(s) of the base: %s", sum(norm.values()), norm or "none")
        typer.echo(f"wrote {out}: {len(result.table)} rows ({counts}) in {time.monotonic() - start:.1f} s")
        typer.echo(f"wrote {lineage_path}")

    @sub.command("concordance")
    def concordance_cmd(
        table: Path = typer.Argument(..., help="Table to check (e.g. the output of `clinical build`)."),
        reference: Path = typer.Option(..., "--reference", "-r", help="Reference table (e.g. the published v1 xlsx)."),
        fmt: str = typer.Option("text", "--format", "-f", help="Output format: text or json."),
        raw: bool = typer.Option(False, "--raw", help="Compare values as they are, without normalizing both sides first."),
        only_mapped: bool = typer.Option(False, "--only-mapped", help="Text format: list only variables a mapping derives "
                                         "from a source."),
        examples: int = typer.Option(5, "--examples", help="How many disagreements to list per variable."),
        min_rate: float = typer.Option(None, "--min-rate", help="Exit 1 if a source-mapped variable agrees less than this "
                                       "(0..1) over values present on both sides."),
        mappings: Path = typer.Option(None, "--mappings", help="Folder of mapping YAML files (default: shipped mappings/)."),
    ) -> None:
        """Per collection and variable: compared, agreeing, rate, missing on one side only, first disagreements."""
        import json

        from etl.errors import ConfigError
        from etl.tables import read_table
        from etl.transform.clinical import Normalizer, load_collections
        from etl.transform.concordance import concordance, format_text

        if fmt not in ("text", "json"):
            from etl.errors import UsageError

            raise UsageError(f"unknown format {fmt!r}; use text or json", "--format")
        maps = load_collections(mappings)
        normalizer = None if raw else Normalizer.load(mappings / "normalize.yaml" if mappings else None)
        report = concordance(read_table(table), read_table(reference), maps, normalizer, max_examples=examples)
        if fmt == "json":
            typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
        else:
            typer.echo(format_text(report, only_mapped=only_mapped), nl=False)
        if min_rate is not None:
            low = [t for t in report.lowest_mapped() if t[2] < min_rate]
            if low:
                ds, name, rate = low[0]
                typer.echo(f"error: {ds} {name} agrees {100 * rate:.2f}% < {100 * min_rate:.2f}%", err=True)
                raise typer.Exit(1)

    app.add_typer(sub, name="clinical")
