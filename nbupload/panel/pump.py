"""The UI pump: engine events in (any thread), coalesced widget updates out (one thread).

Engine callbacks run on worker threads, where touching a widget would race the kernel.
The pump only records the latest snapshot per task there, then asks a *scheduler* to run
:meth:`UIPump.flush` on the UI thread (the kernel's event loop). A flush applies at most
one update per task per ``interval`` (state changes go through at once) in a single batch,
so a fast upload costs the frontend about ten messages a second per task, not thousands.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..engine.state import TaskEvent, TaskSnapshot

__all__ = ["LoopScheduler", "ManualScheduler", "Scheduler", "UIPump", "kernel_scheduler"]


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


def kernel_scheduler(shell: Any) -> LoopScheduler | ManualScheduler:
    """The kernel's main loop when running under ipykernel, else a manual scheduler."""
    kernel = getattr(shell, "kernel", None)
    io_loop = getattr(kernel, "io_loop", None)
    loop = getattr(io_loop, "asyncio_loop", None)
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
    return LoopScheduler(loop) if loop is not None else ManualScheduler()


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
    def push(self, item: TaskEvent | TaskSnapshot) -> None:
        snap = item.snapshot if isinstance(item, TaskEvent) else item
        with self._lock:
            if self._closed:
                return
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
