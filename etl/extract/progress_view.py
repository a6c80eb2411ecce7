"""Progress for a download run: an overall bar plus one line per item in flight.

On a terminal this is a rich display (overall bar, a spinner row per series/file being fetched); in CI
and log files every finished item is one plain log line and the overall count is logged every few seconds.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.progress import Progress, ProgressColumn, Task, TaskID

log = logging.getLogger("etl.extract")


def _CountColumn(items: ProgressColumn) -> ProgressColumn:
    """The count column: ``12/60`` for the run and step rows, ``3.1/12.0 MB`` for a row receiving bytes."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class CountColumn(ProgressColumn):
        def render(self, task: Task) -> RenderableType:
            if task.fields.get("unit") != "bytes":
                return items.render(task)
            done = f"{task.completed / 1e6:.1f}"
            return Text(f"{done}/{task.total / 1e6:.1f} MB" if task.total else f"{done} MB", style="progress.download")

    return CountColumn()


class RunProgress:
    def __init__(self, description: str, total: int) -> None:
        self.description = description
        self.total = total
        self.done = 0
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last_log = 0.0
        self._rich: Progress | None = None
        self._overall: TaskID | None = None
        self._rows: dict[str, TaskID] = {}

    def __enter__(self) -> RunProgress:
        if sys.stderr.isatty():
            from etl.progress import console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._rich = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), _CountColumn(MofNCompleteColumn()),
                TimeElapsedColumn(), console=console(), transient=False,
            )  # fmt: skip
            self._rich.start()
            self._overall = self._rich.add_task(self.description, total=self.total)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._rich is not None:
            self._rich.stop()
        log.info("%s: %d/%d done (%.1f s)", self.description, self.done, self.total, time.monotonic() - self._start)

    def started(self, key: str, label: str, total: int | None = None) -> None:
        """An item (series, file) started; ``total`` is its own step count if it has one."""
        if self._rich is not None:
            with self._lock:
                self._rows[key] = self._rich.add_task(f"  {label}", total=total)

    def bytes_of(self, key: str, done: int, total: int | None) -> None:
        """A byte bar for an item whose body is arriving (total None: size unknown, the bar just counts)."""
        if self._rich is not None and key in self._rows:
            self._rich.update(self._rows[key], completed=done, total=total, unit="bytes")

    def step(self, key: str, n: int = 1) -> None:
        if self._rich is not None and key in self._rows:
            self._rich.advance(self._rows[key], n)

    def finished(self, key: str, message: str, failed: bool = False, quiet: bool = False) -> None:
        """An item ended (fetched, cached or failed): log it and advance the overall count.

        ``quiet`` items (nothing happened: already cached, lookup fine) are logged at DEBUG so that a rerun
        over thousands of finished series does not bury the few lines that matter.
        """
        log.log(logging.WARNING if failed else logging.DEBUG if quiet else logging.INFO, "%s", message)
        with self._lock:
            self.done += 1
            row = self._rows.pop(key, None)
            now = time.monotonic()
            periodic = now - self._last_log >= 5
            if periodic:
                self._last_log = now
        if self._rich is not None:
            if row is not None:
                self._rich.remove_task(row)
            if self._overall is not None:
                self._rich.advance(self._overall, 1)
        elif periodic and self.done < self.total:
            log.info("%s: %d/%d done (%.1f s)", self.description, self.done, self.total, now - self._start)
