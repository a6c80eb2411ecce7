"""`mamamia review prepare | serve | export | agreement`: visual QC of the automatic masks."""

from __future__ import annotations

import typer


def register(review: typer.Typer) -> None:
    """Add the rating commands to the `review` group."""
