"""`mamamia export nnunet | monai`: a release in the layouts training frameworks read."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `export` command group to the root app."""
