"""Progress for long work: a bar on a terminal, plain log lines otherwise (CI, pipes, log files).

On a terminal the bars and the log lines go through one rich console (``console()``; the CLI's log handler
uses it too), so a log line is printed above a live bar instead of being glued to it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")
log = logging.getLogger("etl")


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress display suited to where stderr goes."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    if sys.stderr.isatty():
        from rich.progress import track as rich_track

        yield from rich_track(items, description=description, total=total, console=console())
        return
    start = time.monotonic()
    last = start
    n = 0
    for n, item in enumerate(items, 1):
        yield item
        now = time.monotonic()
        # a line every 5 s, and a closing one for work that took long enough to wonder about
        if now - last >= 5 or (n == total and now - start >= 1):
            log.info("%s: %d/%s done (%.1f s)", description, n, total if total is not None else "?", now - start)
            last = now
    if n != total and time.monotonic() - start >= 1:
        log.info("%s: %d done (%.1f s)", description, n, time.monotonic() - start)


_CONSOLE: list[Console] = []


def console() -> Console:
    """The one rich console on stderr that every progress bar and the CLI's log handler share."""
    if not _CONSOLE:
        from rich.console import Console

        _CONSOLE.append(Console(stderr=True))
    return _CONSOLE[0]

