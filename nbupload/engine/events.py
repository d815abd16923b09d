"""Delivering task events to subscribers from one thread, coalescing progress.

State changes and retried errors are delivered in order and never dropped; progress is
coalesced per task to the latest snapshot and delivered at most once per
``interval`` seconds. A progress snapshot older than a state event of the same task is
dropped (the state event carries newer numbers).

Posting wakes the delivery thread only when it sleeps, and after each round it delivered it
lets events gather for ``gather`` seconds (10 ms) before it takes the next: a lone event is
delivered at once, a stream of them in rounds. Waking it at every event (a batch of 10,000
small files posts tens of thousands) handed it the GIL each time, a seventh of the kernel's
GIL-held time in a profile.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from .state import FINISHED_STATES, TaskEvent

__all__ = ["Dispatcher", "RateMeter"]

log = logging.getLogger("nbupload.engine")

Subscriber = Callable[[TaskEvent], None]


class Dispatcher:
    def __init__(self, interval: float = 0.1, gather: float = 0.01) -> None:
        self.interval = interval
        self.gather = gather
        self._subs: list[Subscriber] = []
        self._cond = threading.Condition()
        self._ordered: deque[TaskEvent] = deque()
        self._progress: dict[str, TaskEvent] = {}
        self._last: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._busy = False
        self._sleeping = False  # the delivery thread waits in _next (posting must wake it)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        with self._cond:
            self._subs.append(callback)

        def unsubscribe() -> None:
            with self._cond, contextlib.suppress(ValueError):
                self._subs.remove(callback)

        return unsubscribe

    def post(self, event: TaskEvent) -> None:
        with self._cond:
            if self._stopping:
                return
            if event.kind == "progress":
                self._progress[event.snapshot.id] = event
            else:
                self._progress.pop(event.snapshot.id, None)
                self._ordered.append(event)
                if event.snapshot.state in FINISHED_STATES:
                    self._last.pop(event.snapshot.id, None)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="nbupload-events", daemon=True)
                self._thread.start()
            if self._sleeping:
                # notify_all: flush() waits on the same condition, and one notify() could
                # wake a flusher instead of the delivery thread
                self._cond.notify_all()

    def _next(self) -> list[TaskEvent] | None:
        with self._cond:
            while True:
                if self._ordered:
                    out = list(self._ordered)
                    self._ordered.clear()
                    self._busy = True
                    return out
                now = time.monotonic()
                due: list[TaskEvent] = []
                wait: float | None = None
                for task_id, event in list(self._progress.items()):
                    ready_at = self._last.get(task_id, 0.0) + self.interval
                    if ready_at <= now:
                        due.append(event)
                        del self._progress[task_id]
                        self._last[task_id] = now
                    else:
                        wait = ready_at - now if wait is None else min(wait, ready_at - now)
                if due:
                    self._busy = True
                    return due
                if self._stopping:
                    return None
                self._sleeping = True
                try:
                    self._cond.wait(wait)
                finally:
                    self._sleeping = False

    def _run(self) -> None:
        while True:
            batch = self._next()
            if batch is None:
                return
            with self._cond:
                subs = list(self._subs)
            for event in batch:
                for cb in subs:
                    try:
                        cb(event)
                    except Exception:  # a broken subscriber must not stop the others
                        log.exception("nbupload: event subscriber %r failed", cb)
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                stopping = self._stopping
            if not stopping and self.gather > 0:
                time.sleep(self.gather)  # let the next round gather (posts do not wake it now)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every posted state event has been delivered."""
        end = time.monotonic() + timeout
        with self._cond:
            while (self._ordered or self._busy) and time.monotonic() < end:
                self._cond.wait(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


class RateMeter:
    """Exponentially smoothed rate of a growing counter (time constant ``tau`` seconds)."""

    def __init__(self, tau: float = 3.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.tau = tau
        self.rate = 0.0
        self._clock = clock
        self._t: float | None = None
        self._v = 0

    def reset(self, value: int) -> None:
        self._t = self._clock()
        self._v = value

    def update(self, value: int) -> float:
        import math

        now = self._clock()
        if self._t is None:
            self._t, self._v = now, value
            return self.rate
        dt = now - self._t
        if dt <= 0:
            return self.rate
        inst = (value - self._v) / dt
        alpha = 1.0 - math.exp(-dt / self.tau) if self.rate else 1.0
        self.rate = max(0.0, self.rate + alpha * (inst - self.rate))
        self._t, self._v = now, value
        return self.rate

    def eta(self, remaining: int) -> float | None:
        return remaining / self.rate if self.rate > 0 and remaining >= 0 else None
