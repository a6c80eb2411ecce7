"""The `mamamia` command line.

Each command group lives in ``etl/commands/<name>.py`` and exposes ``register(app)``; those modules
import only typer at module level and do their heavy imports inside the command, so ``--help`` is fast.
Expected faults (``EtlError``) become one line ``error: <what> (<where>)`` on stderr and an exit code;
``--debug`` shows the traceback as well.
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback

import click
import typer

from etl import __version__
from etl.errors import EtlError

# pipeline order: `mamamia --help` lists them as a curator meets them
COMMAND_MODULES = (
    "extract",
    "cache",
    "manifest",
    "convert",
    "clinical",
    "split",
    "segment",
    "review",
    "release",
    "validate",
    "summary",
    "query",
    "report",
    "export",
    "demo",
)

app = typer.Typer(
    name="mamamia",
    help="Rebuild, validate and serve a harmonized breast DCE-MRI dataset release (MAMA-MIA style).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mamamia-etl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more detail to stderr."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    _state["debug"] = debug
    # Our own progress lines at INFO; third-party chatter (tcia_utils logs every call, numexpr its
    # thread count) only from WARNING unless --verbose.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("etl").setLevel(logging.DEBUG if verbose else logging.INFO)


for _name in COMMAND_MODULES:
    importlib.import_module(f"etl.commands.{_name}").register(app)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI in-process and return its exit code (used by `main` and by the tests)."""
    _state["debug"] = False
    try:
        rv = app(args=argv, prog_name="mamamia", standalone_mode=False)
    except EtlError as exc:
        if _state["debug"]:
            traceback.print_exc()
        typer.echo(f"error: {exc.message}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        typer.echo("error: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return rv if isinstance(rv, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv[1:]))
