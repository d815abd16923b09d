"""When to try again and how long to wait: exponential backoff with full jitter.

A *streak* is a run of failed attempts with no acknowledged progress in between; it ends
(and the attempt counter resets) as soon as the server confirms new bytes. A streak gives
up after ``retries`` attempts or ``retry_deadline`` seconds, whichever comes first.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable

__all__ = ["RETRYABLE_STATUS", "Backoff", "is_retryable_status", "parse_retry_after"]

from ..protocols.verdict import RETRYABLE_STATUS, is_retryable_status


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # isdigit() alone admits "²", which float() refuses
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Backoff:
    """Full-jitter exponential backoff over one failing streak."""

    def __init__(
        self,
        retries: int,
        base: float,
        cap: float,
        deadline: float,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retries = retries
        self.base = base
        self.cap = cap
        self.deadline = deadline
        self.failures = 0
        self.total_failures = 0
        self._rng = rng or random.Random()
        self._clock = clock
        self._streak_start: float | None = None

    def progress(self) -> None:
        """The server acknowledged new bytes: a new streak starts with the next failure."""
        self.failures = 0
        self._streak_start = None

    def next_delay(self, retry_after: float | None = None) -> float | None:
        """Record a failure; the seconds to wait before the next try, or ``None`` to give up."""
        now = self._clock()
        if self._streak_start is None:
            self._streak_start = now
        self.failures += 1
        self.total_failures += 1
        if self.failures > self.retries:
            return None
        delay = self._rng.uniform(0, min(self.cap, self.base * (2 ** (self.failures - 1))))
        if retry_after is not None:
            delay = max(delay, min(retry_after, max(self.cap, 0.0) * 4))
        if now + delay - self._streak_start > self.deadline:
            return None
        return delay
