"""Progress saves of the journal, written off the threads that upload.

Why it exists: an uploader task writes its journal entry at every acknowledged chunk, so
``nbupload ls`` and a later process's offer show how far it got. A journal write is a temp
file renamed over the old entry, and on ext4 a rename over an existing file makes the kernel
write the new file's data first (``auto_da_alloc``): a few milliseconds, ten or more on a busy
disk. The stream that got the acknowledgement used to wait for that before sending its next
chunk; on a fast link the journal was the slowest part of a chunk (a 128 MiB upload to a
loopback sink took 320 ms instead of 184 ms on a busy machine, median of 7 each).

Such saves need be neither durable nor immediate: a resume asks the server which ranges it
holds. So a stream hands the task to :class:`ProgressSaver` and goes on; one thread writes the
latest record of each task handed in, and saves coalesce when acknowledgements come faster
than the disk takes them. What must be on disk in order with the upload stays synchronous: a
WCS position (durable, before the next append), a learned mode, a state change.

Order between the two paths is kept by the engine (see ``Engine._journal_save``): each record
is numbered as it is taken, under the task's lock; a record older than the one already written
is dropped, and an entry removed (the task ended) is never written again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["ProgressSaver"]

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Hashable)


class ProgressSaver(Generic[T]):
    """One thread that calls ``save(item)`` for every item handed to :meth:`later`, latest first
    come, each once however often it was handed in while it waited. Started on first use."""

    def __init__(self, save: Callable[[T], None], name: str = "nbupload-journal") -> None:
        self._save = save
        self._name = name
        self._cond = threading.Condition()
        self._pending: dict[T, None] = {}  # insertion-ordered set
        self._busy = False  # the thread is saving an item taken from _pending
        self._thread: threading.Thread | None = None
        self._stopped = False

    def later(self, item: T) -> None:
        """Save ``item`` soon, on the saver's thread (at once, on this thread, once stopped)."""
        with self._cond:
            if not self._stopped:
                self._pending[item] = None
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                    self._thread.start()
                self._cond.notify()
                return
        self._save(item)

    def discard(self, item: T) -> None:
        """Forget a save of ``item`` that has not started."""
        with self._cond:
            self._pending.pop(item, None)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every save handed in so far is written; False if ``timeout`` ran out."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Write what is pending, end the thread; later saves are written by their caller."""
        self.flush(timeout)
        with self._cond:
            self._stopped = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()  # flush() waiters
                while not self._pending and not self._stopped:
                    self._cond.wait()
                if not self._pending:
                    return
                item = next(iter(self._pending))
                del self._pending[item]
                self._busy = True
            try:
                self._save(item)
            except Exception:  # pragma: no cover - _save logs its own OSErrors; this is a bug
                log.exception("nbupload: a journal save failed")
