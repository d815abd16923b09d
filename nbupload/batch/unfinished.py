"""Batches an earlier process left in the journal: list, forget, or resume them as one.

A batch is journaled as one (``<journal dir>/batches/``, the record format is
:class:`nbupload.engine.journal.BatchRecord`): its id, files (path and relative name), URL
and options without secrets, and which files are done (a :class:`~nbupload.engine.journal.DoneLog`
synced a group of names at a time). After a kernel restart :func:`resume_batch` (``nbupload
resume ID``, ``%upload resume ID``, the panel's offer) makes it one batch again: done files
count as done, the unfinished journal entries of its files are adopted (each resumes where it
stopped), the rest is fed as before. Re-running the same ``upload_many`` call also adopts
them and skips what is done. The record goes once the batch is done or cancelled.

While a process runs a batch it holds the batch's lock (``<id>.lock``, see
:meth:`~nbupload.engine.journal.BatchJournal.lock`): another process lists it as ``running``
and neither resumes nor forgets it; a process that dies (even by SIGKILL) lets it go.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..batchpaths import BatchItem
from ..engine import Engine, UnfinishedTask
from ..engine.journal import BatchJournal, BatchRecord
from ..errors import TaskLockedError
from .core import Batch
from .registry import _LIVE, owner_of
from .start import make_batch

__all__ = ["UnfinishedBatch", "forget_batch", "resumable_alone", "resume_batch", "unfinished_batches"]


@dataclass(frozen=True)
class UnfinishedBatch:
    """A batch left in the journal by an earlier process (``nbupload ls``, ``%upload list``,
    the panel's offers).

    ``bytes_total`` is what its files held when the batch started (the record keeps their
    sizes, so listing needs no ``stat`` per file; resuming stats them again);
    ``bytes_done`` is the done files' sizes plus what the server acknowledged of the others'
    unfinished task entries (``tasks``, their ids). ``state`` uses the words of a task row
    of ``nbupload ls``: ``running`` while another process runs the batch (holds the batch's
    lock, or one of its files' task entry locks), else ``stopped`` (resumable).
    """

    id: str
    url: str
    protocol: str
    files: int
    done: int
    created_at: float
    bytes_total: int = 0
    bytes_done: int = 0
    state: str = "stopped"
    tasks: tuple[str, ...] = ()
    #: what the starting front end noted (``submit(labels=...)``: its notebook, never secrets)
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """One line (``%upload list``): ``batch ID: 2/8 files done, 80.0 KiB/320.0 KiB -> URL``."""
        from ..units import format_size

        size = f"{format_size(self.bytes_done)}/{format_size(self.bytes_total)}"
        running = ", running elsewhere" if self.state == "running" else ""
        return f"batch {self.id}: {self.done}/{self.files} files done, {size}{running} -> {self.url}"

    def as_dict(self) -> dict[str, Any]:
        """For ``nbupload ls --json``: the names of :class:`~nbupload.batch.BatchSnapshot`'s
        counters, so a live batch and a journaled one read alike."""
        return {
            "kind": "batch",
            "id": self.id,
            "url": self.url,
            "protocol": self.protocol,
            "state": self.state,
            "locked": self.state == "running",
            "files_total": self.files,
            "files_done": self.done,
            "bytes_total": self.bytes_total,
            "bytes_done": self.bytes_done,
            "tasks": list(self.tasks),
            "created_at": self.created_at,
        }


def unfinished_batches(
    engine: Engine | None = None, *, entries: Iterable[UnfinishedTask] | None = None
) -> list[UnfinishedBatch]:
    """Batches in the journal that are not done (and not running in this process).

    ``entries``: the engine's unfinished task entries when the caller has them already
    (``engine.unfinished()`` is read otherwise), to tell which are the batches' files.
    Reads each batch's record and done log, and no file: sizes are the recorded ones.
    """
    engine = _engine(engine)
    if not engine.config.journal:
        return []
    journal = BatchJournal(engine.config.tasks_dir)
    records = [rec for rec in journal.records() if rec.id not in _LIVE]
    if not records:
        return []
    if entries is None:
        try:
            entries = engine.unfinished()
        except OSError:  # the batches are still listed, without their files' partial bytes
            entries = []
    by_file = {(e.path, e.name): e for e in entries}
    return [_summary(journal, rec, by_file) for rec in records]


def _summary(
    journal: BatchJournal, rec: BatchRecord, by_file: Mapping[tuple[str | None, str], UnfinishedTask]
) -> UnfinishedBatch:
    """One journaled batch as ``ls`` shows it: counts from its done log, bytes from the sizes
    in its record (a record without them, from an older version, stats its files)."""
    done_names = journal.done_log(rec.id).read()
    sizes = rec.sizes if rec.sizes is not None else [_size(path) for path, _name in rec.items]
    done = bytes_done = 0
    tasks: list[UnfinishedTask] = []
    for (path, name), size in zip(rec.items, sizes, strict=True):
        if name in done_names:
            done += 1
            bytes_done += size
            continue
        if by_file:
            entry = by_file.get((path, rec.prefix + name))
            if entry is not None:
                tasks.append(entry)
                bytes_done += min(entry.acked, size)
    running = journal.is_locked(rec.id) or any(t.locked for t in tasks)
    return UnfinishedBatch(
        rec.id,
        rec.url,
        rec.protocol,
        len(rec.items),
        done,
        rec.created_at,
        bytes_total=sum(sizes),
        bytes_done=bytes_done,
        state="running" if running else "stopped",
        tasks=tuple(t.id for t in tasks),
        labels=_labels(rec.options.get("labels")),
    )


def _engine(engine: Engine | None) -> Engine:
    if engine is None:
        from ..api import get_engine

        return get_engine()
    return engine


def _labels(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _journaled(engine: Engine, batch_id: str) -> tuple[BatchJournal, BatchRecord]:
    """The journal and record of batch ``batch_id``, which no process runs: ``KeyError`` when
    the journal has no such batch (or it lives in this process), :class:`TaskLockedError`
    when another process runs it."""
    if not engine.config.journal or batch_id in _LIVE:
        raise KeyError(batch_id)
    journal = BatchJournal(engine.config.tasks_dir)
    rec = journal.read(batch_id)
    if rec is None:
        raise KeyError(batch_id)
    if journal.is_locked(batch_id):
        raise TaskLockedError(f"batch {batch_id} is being uploaded by another process right now")
    return journal, rec


def forget_batch(batch_id: str, *, engine: Engine | None = None) -> int:
    """Remove a journaled batch (its record, done log, and its files' unfinished task entries
    that no process runs); how many task entries went. ``KeyError`` when there is no such
    batch in the journal, :class:`TaskLockedError` while another process runs it. Nothing on
    the server is touched."""
    engine = _engine(engine)
    journal, rec = _journaled(engine, batch_id)
    hold = journal.lock(batch_id)  # no process resumes it while it goes
    try:
        theirs = {(path, rec.prefix + name) for path, name in rec.items}
        gone = 0
        for entry in engine.unfinished():
            if (entry.path, entry.name) in theirs and not entry.locked:
                with contextlib.suppress(KeyError, RuntimeError):
                    engine.discard(entry.id)
                    gone += 1
        journal.remove(batch_id)
    finally:
        hold.release(remove=True)
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
    query held a secret. ``KeyError`` when no such batch exists, :class:`TaskLockedError`
    while another process runs it (see ``nbupload ls``).
    """
    live = _LIVE.get(batch_id)
    if live is not None:
        live.reopen()  # closed (its feeder stopped, its lock let go): run here again
        live.resume()
        live.retry()
        return live
    engine = _engine(engine)
    journal, rec = _journaled(engine, batch_id)
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


def resumable_alone(engine: Engine, entries: Iterable[UnfinishedTask] | None = None) -> list[str]:
    """The ids "resume all" resumes one by one, after resuming the batches as batches.

    Tasks of this process that can resume and belong to no batch, then journal entries no
    other process runs that are no journaled batch's files. A batch's files go through their
    batch (its counts, its steering): a failed file of a failed batch resumed on its own would
    run outside it and be reported as a task the user never started. ``entries``: the
    engine's unfinished task entries when the caller has them (read once otherwise).
    """
    if entries is None:
        entries = engine.unfinished()
    entries = list(entries)
    in_batches = {task_id for b in unfinished_batches(engine, entries=entries) for task_id in b.tasks}
    ids = [t.id for t in engine.tasks() if t.can_resume and owner_of(t.id) is None]
    ids += [u.id for u in entries if not u.locked and u.id not in in_batches]
    return ids
