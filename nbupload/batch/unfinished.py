"""Batches an earlier process left in the journal: list, forget, or resume them as one.

A batch is journaled as one (``<journal dir>/batches/``, the record format is
:class:`nbupload.engine.journal.BatchRecord`): its id, files (path and relative name), URL
and options without secrets, and which files are done (a :class:`~nbupload.engine.journal.DoneLog`
synced a group of names at a time). After a kernel restart :func:`resume_batch` (``nbupload
resume ID``, ``%upload resume ID``, the panel's offer) makes it one batch again: done files
count as done, the unfinished journal entries of its files are adopted (each resumes where it
stopped), the rest is fed as before. Re-running the same ``upload_many`` call also adopts
them and skips what is done. The record goes once the batch is done or cancelled.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from ..batchpaths import BatchItem
from ..engine import Engine
from ..engine.journal import BatchJournal
from .core import Batch
from .registry import _LIVE
from .start import make_batch

__all__ = ["UnfinishedBatch", "forget_batch", "resume_batch", "unfinished_batches"]


@dataclass(frozen=True)
class UnfinishedBatch:
    """A batch left in the journal by an earlier process (``nbupload ls``, the panel's offers)."""

    id: str
    url: str
    protocol: str
    files: int
    done: int
    created_at: float

    @property
    def text(self) -> str:
        return f"batch {self.id}: {self.done}/{self.files} files done -> {self.url}"


def unfinished_batches(engine: Engine | None = None) -> list[UnfinishedBatch]:
    """Batches in the journal that are not done (and not running in this process)."""
    if engine is None:
        from ..api import get_engine

        engine = get_engine()
    if not engine.config.journal:
        return []
    journal = BatchJournal(engine.config.tasks_dir)
    out = []
    for rec in journal.records():
        if rec.id in _LIVE:
            continue
        done = len(journal.done_log(rec.id).read() & {n for _, n in rec.items})
        out.append(UnfinishedBatch(rec.id, rec.url, rec.protocol, len(rec.items), done, rec.created_at))
    return out


def forget_batch(batch_id: str, *, engine: Engine | None = None) -> int:
    """Remove a journaled batch (its record, done log, and its files' unfinished task entries
    that no process runs); how many task entries went. ``KeyError`` when there is no such
    batch in the journal. Nothing on the server is touched."""
    if engine is None:
        from ..api import get_engine

        engine = get_engine()
    if not engine.config.journal:
        raise KeyError(batch_id)
    journal = BatchJournal(engine.config.tasks_dir)
    rec = journal.read(batch_id)
    if rec is None or batch_id in _LIVE:
        raise KeyError(batch_id)
    theirs = {(path, rec.prefix + name) for path, name in rec.items}
    gone = 0
    for entry in engine.unfinished():
        if (entry.path, entry.name) in theirs and not entry.locked:
            with contextlib.suppress(KeyError, RuntimeError):
                engine.discard(entry.id)
                gone += 1
    journal.remove(batch_id)
    return gone


def resume_batch(
    batch_id: str,
    *,
    engine: Engine | None = None,
    url: str | None = None,
    window: int | None = None,
    **credentials: Any,
) -> Batch:
    """The batch ``batch_id`` again, as one: live in this process, or from the journal.

    Done files count as done; its files' unfinished journal entries are adopted (resumed where
    they stopped); the rest is fed as before. Secrets are never journaled: give them again
    (``token``, ``access_key``/``secret_key``, ``headers``, ``fields``), and ``url`` when its
    query held a secret. ``KeyError`` when no such batch exists.
    """
    live = _LIVE.get(batch_id)
    if live is not None:
        live.resume()
        live.retry()
        return live
    if engine is None:
        from ..api import get_engine

        engine = get_engine()
    if not engine.config.journal:
        raise KeyError(batch_id)
    journal = BatchJournal(engine.config.tasks_dir)
    rec = journal.read(batch_id)
    if rec is None:
        raise KeyError(batch_id)
    done = journal.done_log(batch_id).read()
    options = dict(rec.options)
    options.pop("hidden", None)  # the files are the recorded ones: no walking again
    skip_unchanged = bool(options.pop("skip_unchanged", True))
    for what in ("headers", "fields"):
        given = credentials.pop(what, None)
        if given:
            options[what] = {**(options.get(what) or {}), **given}
    options.update({k: v for k, v in credentials.items() if v is not None})
    items = []
    for path, name in rec.items:
        try:
            st = os.stat(path)
        except OSError:  # gone since: the feeder reports it as failed when it reaches it
            items.append(BatchItem(path, name, 0, 0))
            continue
        items.append(BatchItem(path, name, st.st_size, st.st_mtime_ns))
    batch = make_batch(
        engine,
        items,
        url or rec.url,
        options,
        prefix=rec.prefix,
        skip_unchanged=skip_unchanged,
        check_remote=True,
        window=window,
        record_options=rec.options,
        batch_id=rec.id,
        done=done,
    )
    return batch
