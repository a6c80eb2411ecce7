"""`mamamia report`: a self-contained HTML data card of a release, staged directory or table."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `report` command to the root app."""
