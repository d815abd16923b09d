"""Bandwidth caps: token buckets paid in the body-sending loop.

A task's ``limit_rate`` and the engine's ``max_rate`` (shared by every task and stream) are
each a :class:`TokenBucket`; a request pays every bucket that applies to it
(:class:`Throttle`) before each piece of its body goes out. The bucket lets a debt build
up (a piece is paid in full, then the sender waits until the debt is repaid), so pieces of
any size keep the long-run rate at the cap, and the burst allowance (a tenth of a second
of the rate) bounds how far ahead of the cap a sender can get: over 10 s, at most 1 % more.

Waiting happens in slices of at most :data:`WAIT_SLICE` seconds with the task's ``check``
between them, so pause and cancel act at once on a throttled upload too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["BURST_SECONDS", "MIN_PIECE", "WAIT_SLICE", "SharedCap", "Throttle", "TokenBucket"]

#: The bucket holds at most this many seconds' worth of bytes (the burst allowance).
BURST_SECONDS = 0.1
#: Longest single sleep while waiting for tokens (pause/cancel are checked between sleeps).
WAIT_SLICE = 0.02
#: Smallest piece a throttled body is cut into.
MIN_PIECE = 16 << 10


class TokenBucket:
    """``rate`` bytes per second, shared by every thread that pays into it."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("a rate cap must be positive")
        self.rate = float(rate)
        self.burst = max(float(MIN_PIECE), self.rate * BURST_SECONDS)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._stamp = clock()

    def debit(self, n: int) -> float:
        """Take ``n`` bytes' worth now; return how long the caller must wait to repay its debt."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class SharedCap:
    """The engine's cap, shared by all its tasks; :meth:`set` swaps it for requests under way too."""

    def __init__(self, rate: float | None = None) -> None:
        self.bucket: TokenBucket | None = None
        self.set(rate)

    def set(self, rate: float | None) -> None:
        current = self.bucket
        if rate is None:
            self.bucket = None
        elif current is None or current.rate != float(rate):
            self.bucket = TokenBucket(rate)


class Throttle:
    """The caps one request pays: its task's own bucket and the engine's shared one."""

    def __init__(self, own: TokenBucket | None = None, shared: SharedCap | None = None) -> None:
        self.own = own
        self.shared = shared

    @classmethod
    def of(cls, own: TokenBucket | None, shared: SharedCap | None) -> Throttle | None:
        """A throttle, or ``None`` when no cap can ever apply (no task cap, no engine cap object)."""
        return cls(own, shared) if own is not None or shared is not None else None

    @property
    def buckets(self) -> list[TokenBucket]:
        shared = self.shared.bucket if self.shared is not None else None
        return [b for b in (self.own, shared) if b is not None]

    def piece_limit(self) -> int:
        """The largest piece worth sending at once: a twentieth of a second at the lowest cap."""
        buckets = self.buckets
        if not buckets:
            return 1 << 62
        return max(MIN_PIECE, int(min(b.rate for b in buckets) / 20))

    def take(self, n: int, check: Callable[[], None]) -> None:
        """Pay ``n`` bytes to every bucket, waiting (in slices, ``check`` between) for the slowest."""
        buckets = self.buckets
        if not buckets:
            return
        wait = max(b.debit(n) for b in buckets)
        deadline = time.monotonic() + wait
        while True:
            check()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, WAIT_SLICE))
