"""`mamamia manifest`: derive the release manifest (TCIA collection, patient and series per case) from a table."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the `mamamia manifest` group to the root app."""
    sub = typer.Typer(
        help="Release manifests: which TCIA collection, patient and series each case comes from.",
        no_args_is_help=True,
    )

    @sub.command("from-table")
    def from_table(
        table: Path = typer.Argument(..., help="Clinical table (.xlsx sheet dataset_info, .parquet or .csv)."),
        out: Path = typer.Option(
            None, "--out", "-o", help="CSV to write (patient_id, dataset, tcia_collection, tcia_patient_id, "
            "tcia_series_uid); default: print to stdout."
        ),
        mappings: Path = typer.Option(
            None, "--mappings", help="Folder of mapping YAML files with the TCIA naming rules (default: shipped mappings/)."
        ),
    ) -> None:
        """One manifest row per table row, TCIA names derived by the rules in mappings/<collection>.yaml."""
        from etl.tables import read_table
        from etl.transform.clinical import load_collections
        from etl.transform.manifest import manifest_csv, manifest_from_table, write_manifest

        df = read_table(table)
        manifest = manifest_from_table(df, load_collections(mappings))
        if out is None:
            typer.echo(manifest_csv(manifest), nl=False)
            return
        write_manifest(manifest, out)
        counts = manifest["dataset"].value_counts(sort=False).to_dict()
        summary = ", ".join(f"{k} {v}" for k, v in counts.items())
        typer.echo(f"wrote {out}: {len(manifest)} cases ({summary})")

    app.add_typer(sub, name="manifest")
