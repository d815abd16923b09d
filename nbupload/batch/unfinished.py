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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..batchpaths import BatchItem
from ..engine import Engine, UnfinishedTask
from ..engine.journal import BatchJournal
from .core import Batch
from .registry import _LIVE, owner_of
from .start import make_batch

__all__ = ["UnfinishedBatch", "forget_batch", "resumable_alone", "resume_batch", "unfinished_batches"]


@dataclass(frozen=True)
class UnfinishedBatch:
    """A batch left in the journal by an earlier process (``nbupload ls``, ``%upload list``,
    the panel's offers).

    ``bytes_total`` is what its files hold on disk now (a file gone since counts 0);
    ``bytes_done`` is the done files' sizes plus what the server acknowledged of the others'
    unfinished task entries (``tasks``, their ids). ``state`` uses the words of a task row
    of ``nbupload ls``: ``running`` while another process uploads one of its files (holds its
    task entry's lock), else ``stopped``.
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
    """
    if engine is None:
        from ..api import get_engine

        engine = get_engine()
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
    out = []
    for rec in records:
        done_names = journal.done_log(rec.id).read()
        done = bytes_total = bytes_done = 0
        tasks: list[UnfinishedTask] = []
        for path, name in rec.items:
            size = _size(path)
            bytes_total += size
            if name in done_names:
                done += 1
                bytes_done += size
                continue
            entry = by_file.get((path, rec.prefix + name))
            if entry is not None:
                tasks.append(entry)
                bytes_done += min(entry.acked, size)
        out.append(
            UnfinishedBatch(
                rec.id,
                rec.url,
                rec.protocol,
                len(rec.items),
                done,
                rec.created_at,
                bytes_total=bytes_total,
                bytes_done=bytes_done,
                state="running" if any(t.locked for t in tasks) else "stopped",
                tasks=tuple(t.id for t in tasks),
                labels=_labels(rec.options.get("labels")),
            )
        )
    return out


def _labels(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


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


def resumable_alone(engine: Engine) -> list[str]:
    """The ids "resume all" resumes one by one, after resuming the batches as batches.

    Tasks of this process that can resume and belong to no batch, then journal entries no
    other process runs that are no journaled batch's files. A batch's files go through their
    batch (its counts, its steering): a failed file of a failed batch resumed on its own would
    run outside it and be reported as a task the user never started.
    """
    in_batches = {task_id for b in unfinished_batches(engine) for task_id in b.tasks}
    ids = [t.id for t in engine.tasks() if t.can_resume and owner_of(t.id) is None]
    ids += [u.id for u in engine.unfinished() if not u.locked and u.id not in in_batches]
    return ids
