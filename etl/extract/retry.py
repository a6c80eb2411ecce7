"""Retries with exponential backoff for the download stage.

The client libraries either do not retry at all (tcia_utils) or retry for up to half an hour
(synapseclient). Extraction decides itself what is worth another attempt: server errors (5xx, 429),
resets, timeouts and a payload that failed verification are; a 4xx answer or an unsafe archive is not.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from etl.errors import ExtractError

T = TypeVar("T")
log = logging.getLogger("etl.extract.retry")


class TransientError(ExtractError):
    """A failure another attempt may cure (5xx, reset, timeout, payload that did not verify).

    ``unavailable`` marks a failure of the service itself (5xx, 429, refused/reset connection, timeout) as
    opposed to a payload that arrived but did not verify; only those count towards a ``Breaker``.
    ``retry_after`` is the server's Retry-After, in seconds, when it sent one.
    """

    def __init__(
        self, what: str, where: str | None = None, *, unavailable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(what, where)
        self.unavailable = unavailable
        self.retry_after = retry_after


class PermanentError(ExtractError):
    """A failure that retrying will not cure (4xx, unsafe archive, bad credentials)."""


class ServiceUnavailable(PermanentError):
    """The service looked down for several operations in a row; the rest of the run was not attempted."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    from datetime import datetime, timezone

    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    ``attempts`` counts the first try. The delay before retry ``n`` (1-based) is
    ``min(max_delay, base_delay * factor**(n-1))`` scaled by a random factor in ``[1-jitter, 1]`` so that
    parallel workers hitting the same outage do not retry in lock-step.
    """

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    factor: float = 2.0
    jitter: float = 0.25
    timeout: float = 60.0  # per-request socket timeout (connect and each read), seconds
    max_retry_after: float = 300.0  # longest server-requested wait (Retry-After) that is honoured, seconds
    give_up_after: int = 3  # operations in a row failing on an unavailable service before the run stops

    def delay(self, retry_number: int, rng: random.Random | None = None) -> float:
        raw = min(self.max_delay, self.base_delay * self.factor ** max(0, retry_number - 1))
        if self.jitter <= 0:
            return raw
        r = (rng or random).random()
        return raw * (1.0 - self.jitter * r)

    @classmethod
    def fast(cls) -> RetryPolicy:
        """Short limits for tests and loopback rehearsal: seconds, not minutes."""
        return cls(attempts=4, base_delay=0.05, max_delay=0.3, factor=2.0, jitter=0.0, timeout=2.0, max_retry_after=1.0)

    def wait_before(self, retry_number: int, exc: TransientError) -> float:
        """Backoff before retry ``retry_number``, stretched to the server's Retry-After (capped)."""
        wait = self.delay(retry_number)
        if exc.retry_after is not None:
            wait = max(wait, min(exc.retry_after, self.max_retry_after))
        return wait


class Breaker:
    """Stops a run against a service that is down instead of retrying every remaining item.

    Each finished operation (a case lookup, a series, a file, after its own retries) is reported with
    ``record``. ``threshold`` operations in a row that failed with ``TransientError(unavailable=True)``
    trip the breaker; any other outcome (success, or a payload that arrived but did not verify) resets the
    count. "In a row" is in time, not in order of finishing: a failure counts only if its operation started
    (``check`` returns the start) after the previously counted failure ended, so parallel jobs caught by the
    same short outage count once, and tripping takes an outage that outlasts ``threshold`` consecutive
    retry windows. Once tripped, ``check`` raises ``ServiceUnavailable`` so the remaining items fail at once
    and the run ends in bounded time.
    """

    def __init__(self, service: str, threshold: int = 3) -> None:
        self.service = service
        self.threshold = max(1, threshold)
        self._run = 0
        self._last = ""
        self._last_counted_end = float("-inf")
        self.tripped: str | None = None
        self._lock = threading.Lock()

    def record(self, exc: BaseException | None, started: float | None = None) -> None:
        """Report an operation's outcome; ``started`` is what ``check`` returned for it."""
        with self._lock:
            if isinstance(exc, TransientError) and exc.unavailable:
                if started is not None and started <= self._last_counted_end:
                    return  # it overlapped the failure already counted: the same outage, not a new one
                self._last_counted_end = time.monotonic()
                self._run += 1
                self._last = exc.what
                if self._run >= self.threshold and self.tripped is None:
                    self.tripped = f"{self.service} unavailable: {self._run} operations in a row failed ({self._last})"
                    log.warning("%s; not attempting the rest", self.tripped)
            elif not isinstance(exc, ServiceUnavailable):
                self._run = 0

    def check(self, where: str | None = None) -> float:
        """Raise once tripped; else the operation's start time, to pass back to ``record``."""
        if self.tripped is not None:
            raise ServiceUnavailable(f"{self.tripped}; gave up on the rest of the run", where)
        return time.monotonic()


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    breaker: Breaker | None = None,
) -> T:
    """Call ``fn`` until it succeeds, raises a non-transient error, or attempts run out.

    On exhaustion the last ``TransientError`` is re-raised with the attempt count added, so the final
    message says both what failed and that it was retried. The wait before a retry honours the server's
    Retry-After (up to ``policy.max_retry_after``). With a ``breaker``, retries stop as soon as it trips.
    """
    last: TransientError | None = None
    attempt = 0
    for attempt in range(1, policy.attempts + 1):
        if breaker is not None:
            breaker.check(last.where if last else None)
        try:
            return fn()
        except TransientError as exc:
            last = exc
            if attempt == policy.attempts:
                break
            wait = policy.wait_before(attempt, exc)
            log.info("%s: attempt %d/%d failed (%s); retrying in %.2f s", what, attempt, policy.attempts, exc.what, wait)
            sleep(wait)
    assert last is not None
    raise TransientError(
        f"{last.what}; gave up after {attempt} attempts", last.where, unavailable=last.unavailable
    ) from last
