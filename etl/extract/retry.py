"""Retries with exponential backoff for the download stage.

The client libraries either do not retry at all (tcia_utils) or retry for up to half an hour
(synapseclient). Extraction decides itself what is worth another attempt: server errors (5xx, 429),
resets, timeouts and a payload that failed verification are; a 4xx answer or an unsafe archive is not.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from etl.errors import ExtractError

T = TypeVar("T")
log = logging.getLogger("etl.extract.retry")


class TransientError(ExtractError):
    """A failure another attempt may cure (5xx, reset, timeout, payload that did not verify)."""


class PermanentError(ExtractError):
    """A failure that retrying will not cure (4xx, unsafe archive, bad credentials)."""


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

    def delay(self, retry_number: int, rng: random.Random | None = None) -> float:
        raw = min(self.max_delay, self.base_delay * self.factor ** max(0, retry_number - 1))
        if self.jitter <= 0:
            return raw
        r = (rng or random).random()
        return raw * (1.0 - self.jitter * r)

    @classmethod
    def fast(cls) -> RetryPolicy:
        """Short limits for tests and loopback rehearsal: seconds, not minutes."""
        return cls(attempts=4, base_delay=0.05, max_delay=0.3, factor=2.0, jitter=0.0, timeout=2.0)


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds, raises a non-transient error, or attempts run out.

    On exhaustion the last ``TransientError`` is re-raised with the attempt count added, so the final
    message says both what failed and that it was retried.
    """
    last: TransientError | None = None
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except TransientError as exc:
            last = exc
            if attempt == policy.attempts:
                break
            wait = policy.delay(attempt)
            log.info("%s: attempt %d/%d failed (%s); retrying in %.2f s", what, attempt, policy.attempts, exc.what, wait)
            sleep(wait)
    assert last is not None
    raise TransientError(f"{last.what}; gave up after {policy.attempts} attempts", last.where) from last
