"""The UI pump: engine events in (any thread), coalesced widget updates out (one thread).

Theory of operation
-------------------
Engine callbacks run on worker threads. The pump only records the latest snapshot per task
there and asks a *scheduler* to run :meth:`UIPump.flush` later; a flush applies at most one
update per task per ``interval`` (0.1 s: ~10 updates/s per task; state changes go through at
once) in a single batch.

Under a kernel the scheduler is :class:`ThreadScheduler`: one daemon thread of our own
("nbupload-ui") that sleeps until something is due and then flushes. Widget updates are comm
messages on IOPub; ipykernel's IOPub socket is thread-safe (its IOPubThread queues sends), so
they leave the kernel while a cell keeps the main thread busy (``time.sleep(15)``) instead of
waiting for the main loop as they did when the pump scheduled on it. The *parent* of those
messages: ipykernel < 7 reads one kernel-wide attribute (the latest request) from any thread.
ipykernel 7 keeps the parent in ContextVars; 7.0.0 raised from threads that had none
(ipykernel#1450, ipywidgets#4001, rich#3868), and since 7.0.1 (ipykernel#1451) a thread
without its own parent falls back on the shell's current one, which is what widget state
messages want: they are routed by comm id, not by cell. So the pump thread sets no parent of
its own and never captures a cell's parent (which would pin output to that cell). What
touches widgets (flushes here, button callbacks on the main thread or, with subshells, on a
subshell thread) holds the controller's one lock, so two threads never change one widget.

Without a kernel (terminal IPython, tests) :class:`ManualScheduler` runs what is due when
someone calls :meth:`ManualScheduler.run_due`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..engine.state import TaskEvent, TaskSnapshot

__all__ = ["LoopScheduler", "ManualScheduler", "Scheduler", "ThreadScheduler", "UIPump", "kernel_scheduler"]


class Scheduler(Protocol):
    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the UI thread after ``delay`` seconds; callable from any thread."""


class LoopScheduler:
    """Schedules on an asyncio loop (the kernel's main loop), thread-safely."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.call_later, max(delay, 0.0), fn)


class ManualScheduler:
    """No event loop (terminal IPython, tests): flushes happen when someone calls ``run_due``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._due: list[tuple[float, Callable[[], None]]] = []

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._lock:
            self._due.append((self.clock() + delay, fn))

    def run_due(self, *, force: bool = False) -> int:
        now = self.clock()
        with self._lock:
            ready = [item for item in self._due if force or item[0] <= now]
            self._due = [item for item in self._due if item not in ready]
        for _, fn in ready:
            fn()
        return len(ready)


class ThreadScheduler:
    """Runs callbacks on one daemon thread of its own, at their due time (see the module doc).

    ``call_later`` is callable from any thread; :meth:`close` stops the thread and waits for it.
    A callback that raises is reported on stderr once and does not stop the thread.
    """

    def __init__(self, name: str = "nbupload-ui", clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._heap, (self.clock() + max(delay, 0.0), next(self._seq), fn))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > self.clock()):
                    timeout = None if not self._heap else max(self._heap[0][0] - self.clock(), 0.0)
                    self._cond.wait(timeout)
                if self._closed:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - a broken update must not stop the display
                print(f"nbupload: a panel update failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)


def kernel_scheduler(shell: Any) -> ThreadScheduler | ManualScheduler:
    """A pump thread when running under a kernel (a frontend to update), else a manual scheduler."""
    if getattr(shell, "kernel", None) is not None:
        return ThreadScheduler()
    return ManualScheduler()


class UIPump:
    """Coalesce snapshots per task and apply them in batches on the UI thread.

    ``apply`` receives a list of snapshots (at most one per task) and is always called from
    :meth:`flush`, never from the thread that called :meth:`push`.
    """

    def __init__(
        self,
        apply: Callable[[list[TaskSnapshot]], None],
        scheduler: Scheduler,
        *,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.apply = apply
        self.scheduler = scheduler
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, TaskSnapshot] = {}
        self._last_applied: dict[str, tuple[float, str]] = {}  # id -> (time, state)
        self._scheduled_at: float | None = None
        self._closed = False
        self.applied_batches = 0
        self.applied_updates = 0

    # -- any thread ------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Snapshots waiting to be applied (0 once every row shows its task's latest state)."""
        with self._lock:
            return len(self._pending)

    def push(self, item: TaskEvent | TaskSnapshot) -> None:
        snap = item.snapshot if isinstance(item, TaskEvent) else item
        with self._lock:
            if self._closed or snap.older_than(self._pending.get(snap.id)):
                return  # two threads pushed out of order: the newer snapshot stays
            self._pending[snap.id] = snap
            delay = self._delay_locked(snap, self.clock())
        self._schedule(delay)

    def _delay_locked(self, snap: TaskSnapshot, now: float) -> float:
        last = self._last_applied.get(snap.id)
        if last is None or last[1] != snap.state.value:
            return 0.0
        return max(0.0, last[0] + self.interval - now)

    def _schedule(self, delay: float) -> None:
        now = self.clock()
        with self._lock:
            at = now + delay
            if self._scheduled_at is not None and self._scheduled_at <= at + 1e-3:
                return
            self._scheduled_at = at
        self.scheduler.call_later(delay, self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        with self._lock:
            self._scheduled_at = None
        self.flush()

    # -- UI thread -------------------------------------------------------------------------
    def flush(self, *, force: bool = False) -> int:
        """Apply what is due (everything with ``force``); returns the number of updates."""
        now = self.clock()
        with self._lock:
            if self._closed:
                return 0
            due = [s for s in self._pending.values() if force or self._delay_locked(s, now) <= 1e-3]
            for snap in due:
                del self._pending[snap.id]
                self._last_applied[snap.id] = (now, snap.state.value)
            later = [self._delay_locked(s, now) for s in self._pending.values()]
        if due:
            self.apply(due)
            self.applied_batches += 1
            self.applied_updates += len(due)
        if later:
            self._schedule(min(later))
        return len(due)

    def forget(self, task_id: str) -> None:
        with self._lock:
            self._pending.pop(task_id, None)
            self._last_applied.pop(task_id, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pending.clear()
