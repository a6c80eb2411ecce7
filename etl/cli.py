"""The `mamamia` command line.

Each command group lives in ``etl/commands/<name>.py`` and exposes ``register(app)``; those modules
import only typer at module level and do their heavy imports inside the command, so ``--help`` is fast.
Expected faults (``EtlError``) become one line ``error: <what> (<where>)`` on stderr and an exit code;
``--debug`` shows the traceback as well.

One exit-code rule for every command: 0 ok; 1 findings or failed work (invalid table, failed case,
release problems); 2 unreadable input or a usage error (missing file, bad option); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import difflib
import importlib
import logging
import sys
import traceback
from typing import Any, TextIO

import typer
from typer.core import TyperGroup

from etl import __version__
from etl.errors import EtlError, UsageError  # noqa: F401  (UsageError: re-exported for callers)

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
    "rebuild",
    "demo",
)

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# names of the top-level commands and groups in registration order (filled by the loop at the bottom)
_ORDER: list[str] = []


class PipelineOrderGroup(TyperGroup):
    """Lists commands in registration order (typer itself lists plain commands before groups)."""

    def list_commands(self, ctx: Any) -> list[str]:
        rank = {name: i for i, name in enumerate(_ORDER)}
        return sorted(super().list_commands(ctx), key=lambda n: rank.get(n, len(rank)))


app = typer.Typer(
    name="mamamia",
    cls=PipelineOrderGroup,
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


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (the demo redirects it per stage into its log)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def _log_handler() -> logging.Handler:
    """On a terminal, log through the rich console the progress bars draw on (lines go above the bar,
    never glued to it); otherwise plain ``LEVEL name: message`` lines (CI, pipes, log files)."""
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        from etl.progress import console

        handler: logging.Handler = RichHandler(console=console(), show_time=False, show_path=False, markup=False,
                                               rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        return handler
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    return handler


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
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[_log_handler()], force=True)
    logging.getLogger("etl").setLevel(logging.DEBUG if verbose else logging.INFO)


def _exception_classes(name: str) -> tuple[type[BaseException], ...]:
    """``name`` from every module that may carry click's exceptions: click itself (older typer, and any code
    using click directly) and the copy that recent typer (0.29 here) vendors as ``typer._click``."""
    found: list[type[BaseException]] = []
    for module in ("click.exceptions", "typer._click.exceptions", "typer.exceptions"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)


_CLICK_ERRORS = _exception_classes("ClickException")
_ABORTS = _exception_classes("Abort")
_NO_ARGS_IS_HELP = _exception_classes("NoArgsIsHelpError")
_NO_SUCH_OPTION = _exception_classes("NoSuchOption")


def usage_message(exc: BaseException) -> str:
    """The one-line message of a click usage error, with "did you mean" for a mistyped option."""
    if isinstance(exc, _NO_SUCH_OPTION):
        name = str(getattr(exc, "option_name", ""))
        ctx = getattr(exc, "ctx", None)
        known: list[str] = []
        if ctx is not None:
            for param in ctx.command.get_params(ctx):
                known += [o for o in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ()))
                          if o.startswith("-")]
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6) or list(getattr(exc, "possibilities", None) or [])
        message = str(getattr(exc, "message", exc))
        return f"{message.rstrip('.')}; did you mean {', '.join(close)}?" if close else message
    text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    return text.replace(". Did you mean", "; did you mean")


def _show_click_error(exc: BaseException) -> int:
    """Click's usage (and help hint) lines, then ``error: <message>``; never a traceback."""
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, _NO_ARGS_IS_HELP):
        # plain `mamamia` / `mamamia release`: the help, exit 2 as click does. Typer's rich help printed itself
        # when the exception was made (its text is then empty); plain click carries it as the message.
        text = exc.format_message() if hasattr(exc, "format_message") else ""
        if text.strip():
            typer.echo(text)
        return int(getattr(exc, "exit_code", EXIT_USAGE))
    if ctx is not None:
        option = ctx.help_option_names[0] if ctx.help_option_names else "--help"
        typer.echo(f"{ctx.get_usage()}\nTry '{ctx.command_path} {option}' for help.", err=True)
    typer.echo(f"error: {usage_message(exc)}", err=True)
    return int(getattr(exc, "exit_code", EXIT_FINDINGS))


def _interrupted() -> int:
    typer.echo("error: interrupted", err=True)
    return EXIT_INTERRUPTED


def run(argv: list[str] | None = None) -> int:
    """Run the CLI in-process and return its exit code (used by `main`, the demo and the tests)."""
    _state["debug"] = False
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("etl").level)
    try:
        rv = app(args=argv, prog_name="mamamia", standalone_mode=False)
    except EtlError as exc:
        if _state["debug"]:
            traceback.print_exc()
        typer.echo(f"error: {exc.message}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted()
    except _ABORTS:  # click's prompt abort (Ctrl-C / Ctrl-D at a prompt)
        return _interrupted()
    except _CLICK_ERRORS as exc:
        if _state["debug"]:
            traceback.print_exc()
        return _show_click_error(exc)
    finally:
        # a nested run (the demo drives stages in-process) must not leave its handlers behind
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("etl").setLevel(saved[2])
    if rv == EXIT_INTERRUPTED:  # typer turns KeyboardInterrupt into Exit(130) and says nothing
        return _interrupted()
    return rv if isinstance(rv, int) else EXIT_OK


def main() -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv[1:]))


def _registered(typer_app: typer.Typer) -> list[str]:
    """Top-level names registered so far (commands, then groups), as the help will show them."""
    names = [c.name or (c.callback.__name__.replace("_", "-") if c.callback else "") for c in typer_app.registered_commands]
    for g in typer_app.registered_groups:
        name = g.name if isinstance(g.name, str) else None
        if name is None and g.typer_instance is not None and isinstance(g.typer_instance.info.name, str):
            name = g.typer_instance.info.name
        names.append(name or "")
    return names


for _name in COMMAND_MODULES:
    _before = set(_registered(app))
    importlib.import_module(f"etl.commands.{_name}").register(app)
    _ORDER += [n for n in _registered(app) if n not in _before and n not in _ORDER]
