"""`mamamia review ...`: the expert review loop after the preliminary masks.

Rating (prepare the views, serve the rating app, export the ratings, rater agreement) and correction
(blinded assignment to experts, import of corrected masks, correction figures) are two jobs, each in its own
command module; this one only assembles the group.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `review` command group to the root app."""
    from etl.commands import review_corrections, review_rating

    sub = typer.Typer(
        help="Rate the automatic masks in the browser, assign them to experts for correction, import the "
             "corrections with their statistics.",
        no_args_is_help=True,
    )
    review_rating.register(sub)
    review_corrections.register(sub)
    app.add_typer(sub, name="review")
