"""The :class:`Batch`: its files fed to the engine a window at a time, steered and seen as one.

The batch feeds its files to the engine a *window* at a time (a batch of 10,000 files never
holds 10,000 open files or queued tasks), first planning each window (skip, upload, or append
from a recorded size: :mod:`nbupload.batch.plan`), and keeps the
aggregate: files done/total, bytes, rate, ETA and the failures with their server codes
(:meth:`Batch.snapshot`). ``pause``/``resume``/``cancel``/``retry`` act on every file;
``batch[name]`` is one file's :class:`~nbupload.engine.Task` for steering it alone. A
journaled batch writes its record once and its done files a group at a time
(:mod:`nbupload.batch.unfinished` reads them back after a restart).

Layering: a front end at the API level, using only :meth:`Engine.submit` and the public
:class:`Task` controls, so it works with today's engine unchanged; when the engine grows
batches of its own (journaled as one, shown as one row), this module keeps its API and
hands the bookkeeping down.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from ..batchpaths import BatchItem
from ..engine import Engine, TaskState
from ..engine.journal import BatchJournal, BatchRecord, DoneLog, TaskLock
from ..engine.redact import split_secrets
from ..engine.state import FINISHED_STATES, can
from ..engine.task import Task
from .manifest import Manifest
from .plan import Plan, Planner
from .registry import _LIVE, _OWNER, _SUBMITTING, _drop_owner
from .snapshot import BatchError, BatchFailure, BatchSnapshot

__all__ = ["Batch"]

#: Batch states in which :meth:`Batch.wait` returns (as :attr:`BatchSnapshot.settled`).
_SETTLED_STATES = frozenset({"paused", "done", "failed", "cancelled"})
#: Task states whose events wake the feeder and :meth:`Batch.wait` (see :meth:`Batch._on_event`).
_WAKING_STATES = FINISHED_STATES | {TaskState.PAUSED}


class Batch:
    """Files uploaded as one; see the module (and :func:`~nbupload.batch.start.upload_many`). Thread-safe."""

    def __init__(
        self,
        engine: Engine,
        items: list[BatchItem],
        url: str,
        submit: Mapping[str, Any],
        *,
        prefix: str = "",
        manifest: Manifest | None = None,
        check_remote: bool = True,
        window: int | None = None,
        batch_id: str | None = None,
        done: Iterable[str] = (),
        journal: BatchJournal | None = None,
        record_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.id = batch_id or secrets.token_hex(6)
        self.created_at = time.time()
        self.engine = engine
        self._check_engine()
        self.url = url
        self.items = list(items)
        self.prefix = prefix
        self.protocol = str(submit.get("protocol", "uploader"))
        self._submit = dict(submit)
        self._manifest = manifest
        self._planner = Planner(
            engine,
            url,
            self.protocol,
            self._submit,
            manifest.load() if manifest is not None else {},
            prefix=prefix,
            check_remote=check_remote,
        )
        self._window = window or max(4, engine.config.workers * 4)
        self._cond = threading.Condition()
        self._by_name = {item.name: item for item in self.items}
        finished = {n for n in done if n in self._by_name}
        self._waiting: deque[BatchItem] = deque(i for i in self.items if i.name not in finished)
        self._bytes_total = sum(item.size for item in self.items)
        self._bytes_settled = sum(self._by_name[n].size for n in finished)
        self._tasks: dict[str, Task] = {}  # by file name: running, paused or failed (done ones go)
        self._active: dict[str, Task] = {}  # submitted, not done/failed/cancelled
        self._done: set[str] = set(finished)
        self._skipped: set[str] = set()
        self._cancelled: set[str] = set()
        self._failed: dict[str, BatchFailure] = {}
        self._ids: set[str] = set()
        self._paused = False
        self._stopped = False
        self._closed = False
        self._adopted = 0
        self._planning = 0  # files taken from the queue, not yet skipped or submitted
        self._started_feeding = False
        self._unsubscribe: Any = None  # the engine event subscription, while the feeder runs
        self._thread: threading.Thread | None = None
        self._listeners: list[Any] = []
        self._journal = journal
        self._hold: TaskLock | None = None  # the batch's lock (its liveness), when journaled
        self._done_log: DoneLog | None = None
        self._unlogged: list[str] = []
        if journal is not None:
            self._write_record(journal, record_options or {})
        self._adopted_event = threading.Event()
        _LIVE[self.id] = self
        weakref.finalize(self, _drop_owner, self.id)
        weakref.finalize(self, _on_engine_shutdown(self))
        with self._cond:
            self._ensure_feeder(adopt=True)

    def _write_record(self, journal: BatchJournal, options: Mapping[str, Any]) -> None:
        """The batch's journal record (once, durably), unless a resumed batch has one; first
        its lock, held while this process runs it (``TaskLockedError``: another one does)."""
        try:
            self._hold = journal.lock(self.id)
        except OSError:  # the batch runs; only a restart would lose track of it as one
            self._journal = None
            return
        weakref.finalize(self, self._hold.release)  # a batch gone from memory runs no more
        if journal.read(self.id) is None:
            opts = {k: v for k, v in options.items() if k not in ("token", "access_key", "secret_key")}
            names: dict[str, list[str]] = {}
            for what in ("headers", "fields"):
                kept, secret = split_secrets(opts.pop(what, None))
                if kept:
                    opts[what] = kept
                if secret:
                    names[what] = secret
            record = BatchRecord(
                id=self.id,
                url=self.url,
                protocol=self.protocol,
                items=[(item.path, item.name) for item in self.items],
                sizes=[item.size for item in self.items],
                prefix=self.prefix,
                options=opts,
                secret_names=names,
                created_at=self.created_at,
            )
            try:
                journal.write(record)
            except OSError:  # the batch runs; only a restart would lose track of it as one
                self._journal = None
                return
        self._done_log = journal.done_log(self.id)

    def on_change(self, callback: Any) -> Any:
        """``callback()`` (from the feeder thread) whenever files settle or the batch is steered;
        returns a function that removes it. For a front end's row that shows the batch."""
        with self._cond:
            self._listeners.append(callback)

        def remove() -> None:
            with self._cond, contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    def _changed(self) -> None:
        with self._cond:
            listeners = list(self._listeners)
        for callback in listeners:
            with contextlib.suppress(Exception):
                callback()

    def _ensure_feeder(self, adopt: bool = False) -> None:
        """Start the feeder thread unless it runs (under the lock). It ends once every file
        is settled; resume() and retry() start it again."""
        if self._thread is not None and self._thread.is_alive() and not self._feeder_ending:
            return
        self._feeder_ending = False
        if self._unsubscribe is None:
            self._unsubscribe = self.engine.subscribe(self._on_event)
        self._thread = threading.Thread(target=self._run, args=(adopt,), name="nbupload-batch", daemon=True)
        self._thread.start()

    _feeder_ending = False

    def __repr__(self) -> str:
        return f"<Batch {self.id} {self.snapshot().describe()} -> {self.url.split('?')[0]}>"

    def wait_adopted(self, timeout: float | None = 60.0) -> bool:
        """Until the batch has taken over its files' unfinished journal entries (it does so
        first, in its feeder thread), so that a caller resuming other tasks next does not take
        them as tasks of their own. Whether it finished in time."""
        return self._adopted_event.wait(timeout)

    def started_line(self) -> str:
        """What the front ends print when a batch starts (the CLI and ``%upload`` alike)."""
        return f"batch {self.id} of {len(self.items)} files -> {self.url.split('?', 1)[0]}"

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, name: str) -> Task:
        """The task of file ``name`` while it runs, is paused or failed (``KeyError`` before it
        was submitted and once it is done or cancelled: :meth:`file_states` says how it ended)."""
        with self._cond:
            return self._tasks[name]

    @property
    def tasks(self) -> dict[str, Task]:
        with self._cond:
            return dict(self._tasks)

    def file_states(self, start: int = 0, limit: int = 100) -> list[tuple[str, str, int, int]]:
        """One page of the files, in order: ``(name, state, size, bytes held)``; ``state`` is
        ``done``, ``skipped``, ``failed``, ``cancelled``, ``waiting`` or the task's state."""
        out = []
        with self._cond:
            for item in self.items[start : start + max(0, limit)]:
                name = item.name
                task = self._active.get(name)
                if name in self._done:
                    out.append((name, "done", item.size, item.size))
                elif name in self._skipped:
                    out.append((name, "skipped", item.size, item.size))
                elif name in self._failed:
                    out.append((name, "failed", item.size, 0))
                elif name in self._cancelled:
                    out.append((name, "cancelled", item.size, 0))
                elif task is not None:
                    out.append((name, task.state.value, item.size, task.acked))
                else:
                    out.append((name, "waiting", item.size, 0))
        return out

    @property
    def skipped(self) -> list[str]:
        """Names skipped as already uploaded and unchanged."""
        with self._cond:
            return sorted(self._skipped)

    # ------------------------------------------------------------------ controls
    def _file(self, name: str) -> BatchItem:
        item = self._by_name.get(name)
        if item is None:
            raise KeyError(f"no file {name!r} in batch {self.id}")
        return item

    def pause(self, name: str | None = None) -> None:
        """Stop feeding new files and pause the running ones (they keep what was acknowledged).
        With ``name``, pause that one file only (the others go on)."""
        with self._cond:
            if name is not None:
                self._file(name)
                active = [self._active[name]] if name in self._active else []
            else:
                self._paused = True
                active = list(self._active.values())
            self._cond.notify_all()
        for task in active:
            if can("pause", task.state):
                task.pause()
        self._changed()

    def resume(self, name: str | None = None) -> None:
        """Resume paused files and feeding the rest (with ``name``: that paused file only)."""
        self._check_engine()
        with self._cond:
            if name is not None:
                self._file(name)
                active = [self._active[name]] if name in self._active else []
            else:
                self._paused = False
                active = list(self._active.values())
            self._ensure_feeder()
            self._cond.notify_all()
        for task in active:
            if task.state is TaskState.PAUSED:
                task.resume()
        self._changed()

    def cancel(self, name: str | None = None) -> None:
        """Cancel every file not uploaded yet (final); with ``name``, that one file only."""
        with self._cond:
            if name is not None:
                item = self._file(name)
                active = [self._active[name]] if name in self._active else []
                if item in self._waiting:
                    self._waiting.remove(item)
                    self._cancelled.add(name)
            else:
                self._stopped = True
                self._cancelled.update(item.name for item in self._waiting)
                self._waiting.clear()
                active = list(self._active.values())
            self._cond.notify_all()
        for task in active:
            if can("cancel", task.state):
                task.cancel()
        self._changed()

    def retry(self, name: str | None = None) -> int:
        """Try the failed files again (with ``name``: that failed file only); how many."""
        self._check_engine()
        with self._cond:
            if name is not None:
                self._file(name)
                failed = [name] if name in self._failed else []
            else:
                failed = list(self._failed)
            for one in failed:
                del self._failed[one]
            again: list[Task] = []
            for one in failed:
                task = self._tasks.get(one)
                if task is not None and task.state is TaskState.FAILED:
                    self._active[one] = task
                    again.append(task)
                else:  # failed before a task existed (e.g. the file vanished): submit again
                    self._waiting.append(self._by_name[one])
            if failed:
                self._stopped = False
                self._ensure_feeder()
            self._cond.notify_all()
        for task in again:
            task.retry()
        self._changed()
        return len(failed)

    def wait(self, timeout: float | None = None, *, raise_on_error: bool = False) -> BatchSnapshot:
        """Block until the batch settles (done, failed, cancelled or paused); the snapshot.

        With ``raise_on_error`` failures raise :class:`BatchError` listing them.
        ``TimeoutError`` when ``timeout`` passes first.
        """
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            # Woken at every task event: only the state is computed here (no per-task
            # snapshots; with 10,000 small files that work was a fifth of the kernel's CPU).
            while self._state_locked() not in _SETTLED_STATES:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    snap = self._snapshot_locked()
                    raise TimeoutError(f"batch still {snap.state} after {timeout} s: {snap.describe()}")
                self._cond.wait(0.25 if left is None else min(left, 0.25))
            snap = self._snapshot_locked()
        if raise_on_error and snap.state in ("failed", "cancelled"):
            lines = "\n".join(f"  {f}" for f in snap.failures[:20])
            more = f"\n  ... and {len(snap.failures) - 20} more" if len(snap.failures) > 20 else ""
            raise BatchError(f"batch {snap.state}: {snap.describe()}\n{lines}{more}".rstrip(), snap)
        return snap

    def snapshot(self) -> BatchSnapshot:
        with self._cond:
            return self._snapshot_locked()

    def _snapshot_locked(self) -> BatchSnapshot:
        done_bytes = self._bytes_settled
        rate = 0.0
        for task in self._active.values():
            snap = task.snapshot()
            done_bytes += snap.acked
            if snap.state in (TaskState.QUEUED, TaskState.CONNECTING, TaskState.UPLOADING):
                rate += snap.rate
        total_bytes = self._bytes_total
        state = self._state_locked()
        eta = (total_bytes - done_bytes) / rate if rate > 0 else None
        failures = tuple(self._failed.values())
        return BatchSnapshot(
            state=state,
            files_total=len(self.items),
            files_done=len(self._done),
            files_skipped=len(self._skipped),
            files_failed=len(self._failed),
            files_active=len(self._active),
            files_waiting=len(self._waiting),
            bytes_total=total_bytes,
            bytes_done=done_bytes,
            rate=rate,
            eta=eta,
            failures=failures,
            files_cancelled=len(self._cancelled),
        )

    def _state_locked(self) -> str:
        """The batch's state (see :class:`BatchSnapshot`), from the task states alone."""
        # active tasks not paused (a done or failed one counts until the feeder settles it)
        running = any(t.state is not TaskState.PAUSED for t in self._active.values())
        unsettled = running or self._planning or (self._waiting and not self._paused and not self._stopped)
        if self._stopped:
            return "cancelled" if not unsettled else "running"
        if unsettled or not self._started_feeding:
            return "running"
        if self._paused or any(t.state is TaskState.PAUSED for t in self._active.values()):
            return "paused"
        if self._failed:
            return "failed"
        return "done"

    # ------------------------------------------------------------------ the feeder
    def _on_event(self, event: Any) -> None:
        # Only a task that stops (done, failed, cancelled, paused) changes what the feeder
        # does (a window slot frees) or the batch's state (wait() may return); waking both
        # threads at every state a small file passes through was most of their work.
        if (
            event.kind == "state"
            and event.snapshot.state in _WAKING_STATES
            and event.snapshot.id in self._ids
        ):
            with self._cond:
                self._cond.notify_all()

    def _run(self, adopt: bool) -> None:
        ending = False
        try:
            if adopt:
                try:
                    self._adopt()
                finally:
                    self._adopted_event.set()
            with self._cond:
                self._started_feeding = True
            while True:
                if self._unlogged:
                    self._log_done()
                    self._changed()
                with self._cond:
                    self._settle()
                    take: list[BatchItem] = []
                    if not self._paused and not self._stopped and not self.engine.closed:
                        running = sum(1 for t in self._active.values() if t.state is not TaskState.PAUSED)
                        while self._waiting and running + len(take) < self._window:
                            take.append(self._waiting.popleft())
                    self._planning = len(take)
                    if not take:
                        if self._closed or not (self._active or self._waiting):
                            self._feeder_ending = True
                            ending = True
                            break
                        self._cond.notify_all()
                        self._cond.wait(0.5)
                        continue
                for plan in self._planner.plan(take):
                    self._start(plan)
            if ending:
                self._finish_journal()
                self._changed()
        finally:
            unsubscribe = None
            with self._cond:
                if self._thread is threading.current_thread():
                    self._planning = 0
                    self._feeder_ending = True
                    unsubscribe, self._unsubscribe = self._unsubscribe, None
                self._cond.notify_all()
            if unsubscribe is not None:
                unsubscribe()

    def _settle(self) -> None:
        """Move settled tasks out of the active set (under the lock)."""
        for name, task in list(self._active.items()):
            state = task.state
            if state is TaskState.DONE:
                del self._active[name]
                self._done.add(name)
                self._bytes_settled += self._by_name[name].size
                self._note_done(name)
                self._record(name, task)
                self._forget(task)
            elif state is TaskState.FAILED:
                del self._active[name]
                err = task.error
                self._failed[name] = BatchFailure(
                    name,
                    None if err is None or err.code is None else str(err.code),
                    None if err is None else err.status,
                    str(err) if err is not None else "failed",
                )
            elif state is TaskState.CANCELLED:
                del self._active[name]
                self._cancelled.add(name)
                self._forget(task)

    def _forget(self, task: Task) -> None:
        # The task stays in _OWNER (until the batch goes): its last events may still be on
        # their way to a front end, which must not show them as a task of their own. The batch
        # itself keeps no finished task (10,000 files must not mean 10,000 tasks held).
        self.engine.forget(task.id)
        self._ids.discard(task.id)
        for name, held in list(self._tasks.items()):
            if held is task:
                del self._tasks[name]
                break

    def _log_done(self) -> None:
        """News since the last call: fsync the done log if a group is due (outside the lock;
        the names were written under it as the files settled, see :meth:`_note_done`)."""
        with self._cond:
            self._unlogged = []
        if self._done_log is not None:
            with contextlib.suppress(OSError):  # costs only a re-check of these files after a restart
                self._done_log.sync_due()

    def _note_done(self, name: str) -> None:
        """Under the lock: a file is done or skipped; in the done log at once (a file counted
        done is in the log, which a killed process keeps), synced a group at a time."""
        self._unlogged.append(name)
        if self._done_log is not None:
            with contextlib.suppress(OSError):
                self._done_log.add([name], sync=False)

    def _finish_journal(self) -> None:
        """Done or cancelled: the record goes. Paused or failed: it stays, synced."""
        self._log_done()
        if self._done_log is not None:
            self._done_log.close()  # kept: a resume() here logs on (add() opens it again)
        if self._manifest is not None:
            self._manifest.close()  # (record() opens it again)
        with self._cond:
            state = self._snapshot_locked().state
        if self._journal is not None and state in ("done", "cancelled"):
            self._done_log = None
            with contextlib.suppress(OSError):
                self._journal.remove(self.id)
            if self._hold is not None:
                self._hold.release(remove=True)

    def _record(self, name: str, task: Task) -> None:
        if self._manifest is None:
            return
        item = self._by_name[name]
        result = task.result if isinstance(task.result, dict) else {}
        extra: dict[str, Any] = {}
        if self.protocol == "wcs-append":
            extra["etag"] = result.get("hash")
        else:
            extra["boundary"] = task.spec.boundary
            extra["field"] = task.spec.field_name
            if result.get("stored"):
                extra["stored"] = result["stored"]
        # the manifest only saves work on a re-run; never fail an upload for it
        with contextlib.suppress(OSError):
            self._manifest.record(item, **extra)

    def _adopt(self) -> None:
        """Resume this batch's unfinished journal entries (a previous kernel's run)."""
        try:
            entries = self.engine.unfinished()
        except OSError:
            return
        base = self.url.split("?")[0]
        by_path = {(item.path, self._remote_name(item)): item for item in self.items}
        again = {k: self._submit.get(k) for k in ("token", "access_key", "secret_key", "headers", "fields")}
        for entry in entries:
            if entry.locked or entry.path is None or entry.url.split("?")[0] != base:
                continue
            item = by_path.get((os.path.abspath(entry.path), entry.name))
            if item is None or entry.protocol != self.protocol:
                continue
            try:
                with _SUBMITTING:  # owner_of() must know the task from its first event on
                    tasks = self.engine.resume(entry.id, **again)
                    for task in tasks:
                        _OWNER[task.id] = self.id
            except (KeyError, ValueError, OSError, RuntimeError):
                continue
            with self._cond:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(item)
                for task in tasks:
                    self._take(item.name, task)
                    self._adopted += 1

    def _remote_name(self, item: BatchItem) -> str:
        return self.prefix + item.name

    def _take(self, name: str, task: Task) -> None:
        with _SUBMITTING:
            _OWNER[task.id] = self.id
        self._tasks[name] = task
        self._active[name] = task
        self._ids.add(task.id)

    def _start(self, plan: Plan) -> None:
        try:
            self._start_one(plan)
        finally:
            with self._cond:
                self._planning -= 1
                self._cond.notify_all()

    def _start_one(self, plan: Plan) -> None:
        item = plan.item
        if plan.action == "skip":
            with self._cond:
                self._skipped.add(item.name)
                self._bytes_settled += item.size
                self._note_done(item.name)
            return
        opts = dict(self._submit)
        if self.protocol == "wcs-append":
            opts["key"] = self._remote_name(item)
            if plan.action == "append":
                opts["position"] = plan.position
        else:
            opts["filename"] = self._remote_name(item)
        with self._cond:
            if self._stopped:
                self._cancelled.add(item.name)
                return
            if self.engine.closed:  # shut down while planning: the file waits for a resume
                self._waiting.appendleft(item)
                return
        chunk = int(opts.get("chunk_size") or self.engine.config.chunk_size)
        if self._journal is not None and item.size <= chunk:
            # One chunk: no held ranges worth resuming; the batch record says what to send again
            # after a restart, and the task skips its own journal entry (lock file, two fsyncs).
            opts["journal"] = False
        try:
            with _SUBMITTING:  # owner_of() must know the task from its first event on
                task = self.engine.submit(item.path, self.url, **opts)
                _OWNER[task.id] = self.id
        except (OSError, ValueError) as exc:
            with self._cond:
                self._failed[item.name] = BatchFailure(item.name, "source", None, str(exc))
                self._cond.notify_all()
            return
        except RuntimeError:
            if not self.engine.closed:
                raise
            with self._cond:  # shut down as it was submitted: the engine pauses the task it made
                self._waiting.appendleft(item)
            return
        with self._cond:
            self._take(item.name, task)
            if self._stopped:  # cancelled while it was being submitted: cancel() could not see it
                task.cancel()
            elif self._paused:
                task.pause()
            self._cond.notify_all()

    def reopen(self) -> None:
        """After :meth:`close`: run here again (the feeder starts again; :func:`resume_batch`
        calls it). A journaled batch takes its lock again first: ``TaskLockedError`` when
        another process resumed it meanwhile (then it stays closed here). ``RuntimeError``
        once its engine was shut down: ``resume_batch(ID, engine=...)`` continues it there."""
        with self._cond:
            if not self._closed:
                return
        self._check_engine()
        hold = self._hold
        if self._journal is not None and self._done_log is not None and hold is not None and not hold.held:
            hold = self._journal.lock(self.id)  # its record is kept (not done): run here again
            weakref.finalize(self, hold.release)
            self._hold = hold
        with self._cond:
            self._closed = False
            self._ensure_feeder()
            self._cond.notify_all()

    def _check_engine(self) -> None:
        """``RuntimeError`` (as the engine's own) once the engine was shut down: the batch
        cannot run there; its record lets a new engine continue it."""
        if self.engine.closed:
            raise RuntimeError(
                f"batch {self.id}: its engine was shut down; resume it with "
                f"nbupload.batch.resume_batch({self.id!r}, engine=...)"
            )

    def close(self) -> None:
        """Stop the feeder thread and the event subscription (the tasks are not touched)."""
        self._stop_feeder()
        self._let_go()

    def _stop_feeder(self) -> None:
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and threading.current_thread() is not thread:
            thread.join(10)
        with self._cond:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    def _let_go(self) -> None:
        self._planner.close()
        if self._manifest is not None:
            self._manifest.close()
        if self._hold is not None:
            self._hold.release()  # no longer run here: another process may resume it

    def _engine_stopping(self) -> None:
        """:meth:`Engine.shutdown`, first: no file is submitted from now on (the feeder ends;
        the engine pauses the running files next). The batch counts as paused."""
        with self._cond:
            self._paused_by_user = self._paused
            self._paused = True  # settled: a wait() returns (the engine will run nothing more)
        self._stop_feeder()

    _paused_by_user = False

    def _engine_stopped(self) -> None:
        """:meth:`Engine.shutdown`, last (files paused, their locks released): settle what
        finished meanwhile, let the batch's lock go and leave the live batches. The record and
        done log stay (unless every file is done): ``nbupload resume``, another process or
        :func:`~nbupload.batch.resume_batch` here with a new engine continue it."""
        with self._cond:
            self._settle()
            if not (self._waiting or self._active or self._paused_by_user):
                self._paused = False  # every file was done: the batch is done, its record goes
        self._finish_journal()
        self._let_go()
        with _SUBMITTING:
            if _LIVE.get(self.id) is self:
                del _LIVE[self.id]
        _drop_owner(self.id)  # (the engine delivered its last events)
        self._changed()


def _on_engine_shutdown(batch: Batch) -> Any:
    """Register ``batch`` with its engine's :meth:`~nbupload.engine.Engine.on_shutdown` (the
    engine knows nothing of batches: layers point one way), weakly: a batch nobody holds may
    still go away. Returns the function that removes the hook."""
    ref = weakref.ref(batch)

    def stop() -> None:
        live = ref()
        if live is not None:
            live._engine_stopping()

    def released() -> None:
        live = ref()
        if live is not None:
            live._engine_stopped()

    return batch.engine.on_shutdown(stop, released)
