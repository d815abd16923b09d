"""The engine's run queue in two lanes, so tasks resumed from the journal never starve new uploads.

Theory of operation. Every run of a task (its first, and each one after a backoff) waits in
one of two first-in first-out lanes: *foreground* for tasks this process started, and
*background* for tasks adopted from the journal (an offer resumed after a restart, "Resume
all", ``engine.resume()`` of a journal entry). ``limit`` is the engine's ``workers`` setting.

- A foreground run starts as soon as fewer than ``limit`` foreground runs are going, however
  many background runs hold workers: a new upload never waits behind old tasks (whose server
  may be gone and whose runs then hold a worker until a timeout).
- A background run starts only while fewer than ``limit`` runs of either lane are going, and
  only when no foreground run is waiting.

So background runs use only capacity that new uploads do not need; while they fill every slot
and the user starts uploads, up to ``2 x limit`` runs may be under way for a moment (the
engine keeps up to that many worker threads, idle ones blocked here), and background runs
start again once the total is below ``limit``.

Threads are started as runs need them, not all at once: :meth:`Lanes.put` says when the
queued runs outnumber the threads waiting here, and the engine then starts one more (up to
``2 x limit``). A kernel that uploads one file keeps one worker thread, and the first upload
of a process does not wait for eight threads to start (a few milliseconds on a busy machine,
a tenth of a 128 MiB upload to a loopback sink).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Lanes"]

T = TypeVar("T")


class Lanes(Generic[T]):
    """Two FIFO lanes with the start rules of the module docstring. Thread-safe."""

    def __init__(self, limit: int) -> None:
        self._cond = threading.Condition()
        self._limit = max(1, int(limit))
        self._waiting: dict[bool, deque[T]] = {False: deque(), True: deque()}
        self._running = {False: 0, True: 0}
        self._retire = 0
        self._idle = 0  # threads waiting in take()
        self._closed = False

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        with self._cond:
            self._limit = max(1, int(value))
            self._cond.notify_all()

    def put(self, item: T, *, background: bool = False) -> bool:
        """Queue a run in its lane; True when more runs wait than threads do (start one more)."""
        with self._cond:
            self._waiting[background].append(item)
            # one run more: one thread, if it can start now (with every slot taken, an idle
            # thread woken would only sleep again; done() wakes one when a slot frees)
            self._hand_on_locked()
            return self._shortage_locked() > 0

    def shortage(self) -> int:
        """How many more runs wait than threads do (the engine starts that many threads)."""
        with self._cond:
            return self._shortage_locked()

    def _shortage_locked(self) -> int:
        return max(0, len(self._waiting[False]) + len(self._waiting[True]) - self._idle)

    def retire(self, n: int) -> None:
        """Let ``n`` idle threads leave :meth:`take` with ``None`` (fewer workers wanted)."""
        with self._cond:
            self._retire += max(0, n)
            self._cond.notify_all()

    def close(self) -> None:
        """Every :meth:`take`, now and later, returns ``None``; queued runs are dropped."""
        with self._cond:
            self._closed = True
            self._waiting[False].clear()
            self._waiting[True].clear()
            self._cond.notify_all()

    def _pick_locked(self) -> tuple[T, bool] | None:
        fg, bg = self._waiting[False], self._waiting[True]
        if fg and self._running[False] < self._limit:
            return fg.popleft(), False
        if bg and not fg and self._running[False] + self._running[True] < self._limit:
            return bg.popleft(), True
        return None

    def take(self) -> tuple[T, bool] | None:
        """Block until a run may start: ``(item, background)``; ``None`` tells the thread to end.

        The caller reports the end of that run with :meth:`done`.
        """
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._retire:
                    self._retire -= 1
                    self._hand_on_locked()
                    return None
                picked = self._pick_locked()
                if picked is not None:
                    self._running[picked[1]] += 1
                    self._hand_on_locked()
                    return picked
                self._idle += 1
                try:
                    self._cond.wait()
                finally:
                    self._idle -= 1

    def _hand_on_locked(self) -> None:
        """Wake one more idle thread if a run can still start.

        :meth:`put` and :meth:`done` each make at most one run startable, so they wake one
        thread, not all of them (with thousands of small tasks, waking every idle worker
        for each was a tenth of the engine's CPU). A thread that leaves :meth:`take`
        without that run (retiring, or taking another) passes the wake-up on here, so a
        startable run never waits with every thread asleep.
        """
        fg, bg = self._waiting[False], self._waiting[True]
        if (fg and self._running[False] < self._limit) or (
            bg and not fg and self._running[False] + self._running[True] < self._limit
        ):
            self._cond.notify()

    def done(self, background: bool) -> None:
        """A run taken from ``background``'s lane has ended: its slot is free."""
        with self._cond:
            self._running[background] = max(0, self._running[background] - 1)
            self._hand_on_locked()  # one slot free: one run can start, if one waits

    def running(self) -> tuple[int, int]:
        """Runs going now: (foreground, background)."""
        with self._cond:
            return self._running[False], self._running[True]
