"""`mamamia export nnunet | monai`: a release in the layouts training frameworks read."""

from __future__ import annotations

from pathlib import Path

import typer

_PHASES_HELP = ("Phases as channels, in this order (0 = pre-contrast, 1 = first post-contrast); default 1, the "
                "input of the MAMA-MIA nnU-Net baseline. A case without one of them is left out and listed.")
_MASKS_HELP = ("Training labels: expert (default), automatic, or any (expert, else automatic). A training case "
               "without such a mask is left out and listed.")


def register(app: typer.Typer) -> None:
    """Add the `export` command group to the root app."""
    sub = typer.Typer(help="Export a release for training: an nnU-Net v2 raw dataset or a MONAI datalist.",
                      no_args_is_help=True)

    @sub.command("nnunet")
    def nnunet(
        release: Path = typer.Argument(..., help="Release directory."),
        dataset_id: int = typer.Option(..., "--dataset-id", "-d", help="nnU-Net dataset number (1-999)."),
        out: Path = typer.Option(..., "--out", "-o", help="nnUNet_raw folder; DatasetNNN_NAME is written inside it."),
        phases: str = typer.Option("1", "--phases", help=_PHASES_HELP),
        masks: str = typer.Option("expert", "--masks", help=_MASKS_HELP),
        name: str = typer.Option("MAMAMIA", "--name", help="Dataset name after the number."),
        copy: bool = typer.Option(False, "--copy", help="Copy the files instead of hard-linking them (hard links "
                                  "are used when release and output share a file system)."),
        preprocessed: Path = typer.Option(None, "--preprocessed", help="nnUNet_preprocessed folder: also write the "
                                          "release's folds there as DatasetNNN_NAME/splits_final.json."),
    ) -> None:
        """Write DatasetNNN_NAME (imagesTr, labelsTr, imagesTs, dataset.json, splits_final.json) from a release."""
        from etl.export.cases import parse_phases
        from etl.export.nnunet import export_nnunet
        from etl.use.release import open_release

        res = export_nnunet(open_release(_release_dir(release)), out, dataset_id, parse_phases(phases), masks, name,
                            link=not copy, preprocessed=preprocessed)
        sel = res.selection
        _left_out(sel.left_out)
        typer.echo(f"{res.folder}: {len(sel.train)} training cases ({masks} masks), {len(sel.test)} test cases, "
                   f"{len(sel.phases)} channel(s) (phases {','.join(map(str, sel.phases))}), {len(res.splits)} folds; "
                   f"{res.files.get('link', 0)} files hard-linked, {res.files.get('copy', 0)} copied")
        if preprocessed is None:
            typer.echo(f"after nnUNetv2_plan_and_preprocess -d {dataset_id}, copy {res.folder / 'splits_final.json'} "
                       f"to $nnUNet_preprocessed/{res.folder.name}/ (or pass --preprocessed)")
        else:
            typer.echo(f"folds written to {res.splits_written[-1]}")

    @sub.command("monai")
    def monai(
        release: Path = typer.Argument(..., help="Release directory."),
        out: Path = typer.Option(..., "--out", "-o", help="Datalist JSON to write."),
        phases: str = typer.Option("1", "--phases", help=_PHASES_HELP),
        masks: str = typer.Option("expert", "--masks", help=_MASKS_HELP),
        val_fold: int = typer.Option(None, "--val-fold", help="Put this fold's cases under `validation` (and out of "
                                     "`training`); default: every training case in `training` with its `fold`."),
    ) -> None:
        """Write a MONAI datalist: training (with folds), validation, testing; absolute paths."""
        from etl.export.cases import parse_phases
        from etl.export.monai import write_monai_datalist
        from etl.use.release import open_release

        sel = write_monai_datalist(open_release(_release_dir(release)), out, phases=parse_phases(phases),
                                   masks=masks, val_fold=val_fold)
        _left_out(sel.left_out)
        typer.echo(f"{out}: {len(sel.train)} training cases ({masks} masks), {len(sel.test)} test cases")

    app.add_typer(sub, name="export")


def _release_dir(path: Path) -> Path:
    from etl.errors import InputUnreadable

    if not path.is_dir():
        raise InputUnreadable("release directory not found" if not path.exists() else "not a directory", str(path))
    return path


def _left_out(left_out: dict[str, str]) -> None:
    if not left_out:
        return
    shown = list(left_out.items())[:10]
    more = f", ... ({len(left_out) - len(shown)} more)" if len(left_out) > len(shown) else ""
    typer.echo(f"left out {len(left_out)} case(s): " + "; ".join(f"{p} ({why})" for p, why in shown) + more, err=True)
