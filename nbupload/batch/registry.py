"""Which batches live in this process, and which batch each task belongs to.

Every batch has an ``id`` (12 hex digits, like a task's): :func:`get_batch` finds a live one
(``%upload pause ID``), :func:`batches` lists them, and :func:`owner_of` tells a front end (the
panel, ``%upload list``) that a task belongs to a batch, so it shows the batch's one row rather
than a row per file. Kept apart from :class:`~nbupload.batch.core.Batch` so that these lookups
(asked on every task event) need no knowledge of how a batch runs.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..engine import Engine
    from .core import Batch

__all__ = ["batches", "get_batch", "owner_of"]

#: Live batches by id (weakly: a batch nobody holds and that has settled goes away).
_LIVE: weakref.WeakValueDictionary[str, Batch] = weakref.WeakValueDictionary()
#: task id -> the id of the batch it belongs to (dropped when the batch forgets the task).
_OWNER: dict[str, str] = {}
#: Held across ``engine.submit`` + registering the new task's owner, so that :func:`owner_of`
#: (asked by the panel when the task's first event arrives) never answers too early.
_SUBMITTING = threading.RLock()


#: ids of batches gone from memory whose tasks are still in _OWNER (see _drop_owner)
_GONE: list[str] = []


def _drop_owner(batch_id: str) -> None:
    """A batch went away (a weakref finalizer): its tasks are forgotten at the next lookup.

    Takes no lock: a finalizer runs in whatever thread the garbage collector interrupts,
    which may be a thread being started by one that holds ``_SUBMITTING`` and waits for it
    to start (a batch submitting a file starts an engine worker): a deadlock seen in a test
    run. A list append is atomic; :func:`_reap_locked` does the work under the lock."""
    _GONE.append(batch_id)


def _reap_locked() -> None:
    """Under ``_SUBMITTING``: forget the tasks of the batches gone (unless a live batch has
    the id now: one resumed in this process after its engine was shut down)."""
    while _GONE:
        batch_id = _GONE.pop()
        if _LIVE.get(batch_id) is not None:
            continue
        for task_id in [t for t, b in _OWNER.items() if b == batch_id]:
            del _OWNER[task_id]


def get_batch(batch_id: str) -> Batch:
    """The live batch with this id (``KeyError`` if none in this process)."""
    batch = _LIVE.get(batch_id)
    if batch is None:
        raise KeyError(batch_id)
    return batch


def batches(engine: Engine | None = None) -> list[Batch]:
    """The live batches of this process (of ``engine`` only, when given), oldest first."""
    out = [b for b in list(_LIVE.values()) if engine is None or b.engine is engine]
    return sorted(out, key=lambda b: b.created_at)


def owner_of(task_id: str) -> str | None:
    """The id of the batch task ``task_id`` belongs to, or None."""
    with _SUBMITTING:
        _reap_locked()
        return _OWNER.get(task_id)
