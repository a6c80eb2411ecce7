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

        result = run_demo(out, jobs=jobs, echo=lambda line: typer.echo(line, err=True))
        release = _single_release(result.release)
        typer.echo(summary_text(summarize(base_frame(open_release(release).table))))
        total = sum(result.seconds.values())
        typer.echo(f"segmentation: {result.segmentation}; total {total:.1f} s; log: {result.out / 'demo.log'}")
        typer.echo(f"release: {release}")


def _single_release(folder: Path) -> Path:
    """`release build --out` names the release folder itself; accept either layout."""
    if (folder / "clinical_and_imaging_info.parquet").exists():
        return folder
    found = sorted(p.parent for p in folder.glob("*/clinical_and_imaging_info.parquet"))
    return found[0] if found else folder
