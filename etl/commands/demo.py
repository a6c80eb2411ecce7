"""`mamamia demo`: the whole pipeline offline on the bundled synthetic corpus."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("mamamia-demo"), "--out", "-o",
                                 help="Folder for the demo's work files and release (an earlier demo there is replaced)."),
        jobs: int = typer.Option(2, "--jobs", "-j", min=1, help="Parallel workers for download and conversion."),
    ) -> None:
        """Run every stage offline: synthetic DICOM served by loopback TCIA/Synapse stand-ins -> extract ->
        convert -> harmonize -> segment -> release build + verify; print the summary and the release path."""
        from etl.demo import run_demo
        from etl.use.summary import summarize, summary_text
        from etl.use.release import open_release
        from etl.release.tableio import base_frame
        from etl.contracts import REPORT

        result = run_demo(out, jobs=jobs, echo=lambda line: typer.echo(line, err=True))
        release = _single_release(result.release)
        rel = open_release(release)
        table = rel.table
        typer.echo(summary_text(summarize(base_frame(table)), variables=SHOWN).rstrip("\n"))
        n_test = int((table["split"] == "test").sum())
        masks = {k: sum(1 for p in rel.layout.folder(f"{k}_mask").glob("*.nii.gz")) for k in ("expert", "automatic")}
        total = sum(result.seconds.values())
        typer.echo("")
        typer.echo(f"split: {len(table) - n_test} train / {n_test} test; masks: {masks['expert']} expert, "
                   f"{masks['automatic']} automatic ({result.segmentation}); release verifies")
        typer.echo(f"total {total:.1f} s; every stage's output: {result.out / 'demo.log'}")
        if (release / REPORT).is_file():
            typer.echo(f"report: {release / REPORT}   (the data card: open it in a browser)")
        typer.echo("next:")
        typer.echo(f"  mamamia summary {release}                      # every variable")
        typer.echo(f"  mamamia query {release} --where \"pcr == 1\"     # cases with image and mask paths")
        typer.echo(f"  mamamia review serve {release} --db {result.out / 'review.sqlite'} --rater YOUR_NAME"
                   "   # rate the automatic masks in the browser")
        typer.echo(f"  python -c \"from etl import open_release; print(open_release('{release}').cases('her2 == 1'))\"")
        typer.echo(f"  mamamia export nnunet {release} --dataset-id 1 --out nnUNet_raw   # train nnU-Net on it")
        typer.echo(f"release: {release}")


# variables the demo prints (the strata of the split and what varies across the synthetic scanners);
# `mamamia summary RELEASE` prints all of them
SHOWN = ["pcr", "tumor_subtype", "view", "manufacturer", "field_strength"]


def _single_release(folder: Path) -> Path:
    """`release build --out` names the release folder itself; accept either layout."""
    from etl.contracts import TABLE

    if (folder / TABLE).exists():
        return folder
    found = sorted(p.parent for p in folder.glob(f"*/{TABLE}"))
    return found[0] if found else folder
