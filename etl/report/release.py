"""The data card inside a release (`release build --report`): ``report.html`` at the release root.

Called by the build on its ``<out>.partial/`` directory after every other file is written and before
SHA256SUMS, so the card is checksummed with the rest and the build's own verify (PHI scan included) reads
it. Its text depends only on the release's content, so rebuilding gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

from etl.contracts import REPORT
from etl.types import StrPath



def write_release_report(root: StrPath, *, verified: bool = True) -> Path:
    """Write ``root/report.html``; ``verified``: the build verifies the release before publishing it."""
    from etl.atomic import write_text
    from etl.report.build import build_report

    html = build_report(root, verify="build" if verified else "none")
    return write_text(Path(root) / REPORT, html)
