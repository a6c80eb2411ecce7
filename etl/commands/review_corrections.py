"""`mamamia review assign | import | figures`: expert corrections of the automatic masks."""

from __future__ import annotations

import typer


def register(review: typer.Typer) -> None:
    """Add the correction commands to the `review` group."""
