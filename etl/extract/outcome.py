"""What a download run reports: one outcome per item (series or file) plus failures outside any item.

Shared by the TCIA and Synapse extractors so both summarize, count and list failures the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunResult:
    """Outcomes have ``status`` (fetched | cached | linked | failed), ``bytes`` and ``line()``."""

    outcomes: list[Any] = field(default_factory=list)
    seconds: float = 0.0
    gave_up: str | None = None  # why the run stopped early (the service looked down), if it did

    def other_failures(self) -> list[tuple[str, str]]:
        """(where, why) failures that belong to no item: lookups, walks."""
        return []

    @property
    def failed(self) -> list[Any]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.other_failures()

    @property
    def n_failed(self) -> int:
        return len(self.failed) + len(self.other_failures())

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def fetched_bytes(self) -> int:
        return sum(o.bytes for o in self.outcomes if o.status == "fetched")

    def failure_lines(self) -> list[str]:
        return [f"{where}: {why}" for where, why in self.other_failures()] + [o.line() for o in self.failed]


@contextlib.contextmanager
def cancel_on_error(pool: ThreadPoolExecutor) -> Iterator[None]:
    """An error out of a result loop (the cache became unusable) cancels the work still queued."""
    try:
        yield
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
