"""A task: the user's handle on one upload, and its state.

Front ends read :class:`~nbupload.engine.state.TaskSnapshot` values and call
:meth:`Task.pause`, :meth:`Task.resume`, :meth:`Task.cancel` and :meth:`Task.retry`, whose
guards are the :data:`~nbupload.engine.state.ACTIONS` table. The engine runs a task as
``handle = task.begin(gen)`` -> ``run_driver(ctx, handle)`` -> ``task.settle(...)``; drivers
see only the :class:`~nbupload.engine.run.RunHandle` that :meth:`begin` returns, never the
task. A task knows its engine only as a :class:`TaskHost` (post an event, queue a run, save
or remove the journal entry). Every state change goes through :meth:`Task._set_state_locked`,
which refuses a change :data:`~nbupload.engine.state.TRANSITIONS` does not list and posts an
event the dispatcher never drops. Every event (state, progress, error) is snapshotted and
posted under the task's lock, so subscribers see a task's snapshots in the order they were
taken, whichever threads (worker, streams) took them.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..errors import (
    IllegalTransition,
    Interrupted,
    SourceChangedError,
    StepFailed,
    UploadCancelled,
    UploadFailed,
    UploadPaused,
)
from ..protocols import PROTOCOLS
from ..protocols.multipart import ShortReadError
from ..protocols.ranges import RangeSet
from .driverstate import DriverState
from .events import RateMeter
from .journal import JournalRecord, TaskLock
from .redact import redact_url
from .run import Reschedule
from .sources import FileIdentity, OpenedSource, reopen_path
from .spec import TaskSpec
from .state import (
    FINISHED_STATES,
    RUNNING_STATES,
    TRANSITIONS,
    TaskError,
    TaskEvent,
    TaskSnapshot,
    TaskState,
    can,
)

__all__ = ["PROTOCOLS", "Task", "TaskHost", "TaskSpec"]

log = logging.getLogger("nbupload.engine")


class TaskHost(Protocol):
    """What a task needs from its engine."""

    def post(self, event: TaskEvent) -> None: ...

    def enqueue(self, task: Task, gen: int, delay: float = 0.0) -> None: ...

    def save(self, task: Task, durable: bool = True) -> None: ...

    def save_later(self, task: Task) -> None: ...

    def remove(self, task: Task) -> None: ...

    @property
    def journaled(self) -> bool: ...


#: the ``seq`` of every snapshot, taken under the task's lock (itertools.count is atomic)
_SNAPSHOTS = itertools.count(1)

#: errors of an adopted task built without its secrets: its spec lacks them, so writing it
#: back would drop from the journal the scope and secret names a later resume needs
_SPEC_INCOMPLETE = ("needs-secrets", "needs-credentials")


class Task:
    """One upload. Thread-safe; see the module docstring."""

    def __init__(
        self,
        host: TaskHost,
        task_id: str,
        spec: TaskSpec,
        opened: OpenedSource | None,
        *,
        total: int,
        path: str | None = None,
        identity: FileIdentity | None = None,
        lock: TaskLock | None = None,
        acked: RangeSet | None = None,
        driver: DriverState | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self._host = host
        self.id = task_id
        self._set_spec(spec)
        self._opened = opened
        self._path = path if path is not None else (opened.path if opened else None)
        self._identity = identity if identity is not None else (opened.identity if opened else None)
        self._lock_file = lock
        self._cond = threading.Condition()
        self._state = TaskState.QUEUED
        self._gen = 0
        self._want: str | None = None
        # resume() arrived while a pause was pending: the worker queues the task again
        # instead of settling in PAUSED (a quick Pause then Resume must not end paused).
        self._resume_pending = False
        self._wake = threading.Event()
        self._aborters: set[Callable[[], None]] = set()
        self._rescheduled = False
        self.total = total
        self._sent = 0
        self._inflight = 0
        self._ranges = acked or RangeSet()
        self._acked = self._ranges.covered()
        self._error: TaskError | None = None
        self._retrying = False
        self._result: Any = None
        self._attempts = 0
        self._started_at: float | None = None
        self._finished_at: float | None = None
        self._rate = RateMeter()
        self._last_progress_post = 0.0
        self._journal_seq = 0  # records taken (journal_snapshot)
        self._journal_written: int | None = 0  # the newest written; None: the entry was removed
        self._chunk_size = spec.chunk_size
        #: a backoff that outlives one run: a task waiting out a delay gives its worker back
        self.backoff: Any = None
        # driver state carried across runs (uploader mode, WCS position); journaled
        self._driver = driver or DriverState()
        self._labels = {str(k): str(v) for k, v in (labels or {}).items()}
        self._memo: dict[str, Any] = {}

    # ------------------------------------------------------------------ public view
    @property
    def name(self) -> str:
        """What the user recognises: the file name."""
        return self.spec.filename

    @property
    def protocol(self) -> str:
        return self.spec.protocol

    @property
    def driver_state(self) -> DriverState:
        """What the driver learnt that outlives a run (uploader mode, WCS position); journaled."""
        with self._cond:
            return self._driver

    @property
    def labels(self) -> dict[str, str]:
        """The front end's notes given to ``submit(labels=...)`` (a copy); journaled."""
        return dict(self._labels)

    @property
    def url(self) -> str:
        """The URL as shown to people: secret-looking query values and passwords masked."""
        return self._shown_url

    def _set_spec(self, spec: TaskSpec) -> None:
        self.spec = spec
        self._shown_url = redact_url(spec.url)[0]

    @property
    def state(self) -> TaskState:
        return self._state

    @property
    def sent(self) -> int:
        return self._sent

    @property
    def acked(self) -> int:
        return self._acked

    @property
    def ranges(self) -> RangeSet:
        return self._ranges

    @property
    def error(self) -> TaskError | None:
        return self._error

    @property
    def result(self) -> Any:
        return self._result

    @property
    def chunk_size(self) -> int:
        """The chunk size the task uses now (it adapts; ``spec.chunk_size`` is where it started)."""
        return self._chunk_size

    @property
    def persistent(self) -> bool:
        """Whether the journal keeps this task across process restarts (path sources only).

        Tasks of in-memory sources (bytes, arrays, file objects without a path) are
        resumable within this process only; a multi-file session is journaled when every
        one of its files is a path."""
        return self._journalable and self._host.journaled

    @property
    def _journalable(self) -> bool:
        files = self.spec.files
        if files:
            return all(f.path is not None for f in files)
        return self._path is not None

    def snapshot(self) -> TaskSnapshot:
        with self._cond:
            return self._snapshot_locked()

    def _snapshot_locked(self) -> TaskSnapshot:
        remaining = self.total - self._acked
        moving = self._state in RUNNING_STATES and self._state is not TaskState.QUEUED and not self._retrying
        rate = self._rate.rate if moving else 0.0
        return TaskSnapshot(
            id=self.id,
            name=self.name,
            protocol=self.protocol,
            url=self.url,
            state=self._state,
            total=self.total,
            sent=self._sent,
            acked=self._acked,
            ranges=self._ranges,
            rate=rate,
            eta=(remaining / rate if rate > 0 else None) if moving else None,
            error=self._error,
            result=self._result,
            attempts=self._attempts,
            started_at=self._started_at,
            finished_at=self._finished_at,
            inflight=self._inflight,
            chunk_size=self._chunk_size,
            retrying=self._retrying and self._state in RUNNING_STATES,
            seq=next(_SNAPSHOTS),
        )

    def __repr__(self) -> str:
        from ..units import format_size

        err = f" error={str(self._error)!r}" if self._error and self._state is TaskState.FAILED else ""
        return (
            f"<Task {self.id} {self.name!r} {self.protocol} {self._state.value} "
            f"{format_size(self._acked)}/{format_size(self.total)} chunk {format_size(self._chunk_size)} "
            f"-> {self.url}{err}>"
        )

    # ------------------------------------------------------------------ controls
    def pause(self) -> None:
        """Stop now (in-flight requests are aborted); keep everything acknowledged.

        No-op unless queued or running."""
        with self._cond:
            if not can("pause", self._state):
                return
            if self._state is TaskState.QUEUED and self._want is None:
                self._gen += 1  # a queued (or backing-off) run must not start
                self._set_state_locked(TaskState.PAUSED)
                return
            self._want = "pause"
            self._resume_pending = False
            self._wake.set()
            aborters = list(self._aborters)
        self._abort(aborters)

    def cancel(self) -> None:
        """Stop now and forget the task (its journal entry goes). Final."""
        with self._cond:
            if not can("cancel", self._state):
                return
            if self._state in (TaskState.CONNECTING, TaskState.UPLOADING):
                self._want = "cancel"
                self._wake.set()
                aborters = list(self._aborters)
            else:
                self._gen += 1  # a queued run must not start
                self._cleanup(remove_journal=True)
                self._set_state_locked(TaskState.CANCELLED)
                return
        self._abort(aborters)

    @staticmethod
    def _abort(aborters: list[Callable[[], None]]) -> None:
        for abort in aborters:
            try:
                abort()
            except Exception:  # pragma: no cover - closing a socket that is already gone
                log.debug("nbupload: abort failed", exc_info=True)

    @property
    def can_resume(self) -> bool:
        """Whether :meth:`resume` would do something: paused, failed, or a pause still pending."""
        with self._cond:
            return (
                can("resume", self._state)
                or can("retry", self._state)
                or (self._state in RUNNING_STATES and self._want == "pause")
            )

    def resume(self) -> None:
        """Paused or failed: queue the task again; pausing: withdraw the pause. No-op otherwise."""
        with self._cond:
            if self._state in RUNNING_STATES and self._want == "pause":
                self._want = None
                self._resume_pending = True
                return
            if not (can("resume", self._state) or can("retry", self._state)):
                return
            self._error = None
            self.backoff = None
            self._set_state_locked(TaskState.QUEUED)
            gen = self._gen = self._gen + 1
        self._host.enqueue(self, gen)

    def retry(self) -> None:
        """Failed: queue the task again (the server is asked what it holds first)."""
        if can("retry", self._state):
            self.resume()

    def wait(self, timeout: float | None = None, *, raise_on_error: bool = False) -> TaskSnapshot:
        """Block until the task settles (done, failed, cancelled or paused).

        Returns the final snapshot. With ``raise_on_error`` a failed task raises
        :class:`UploadFailed` (its ``.error`` has the server's code and message), a
        cancelled one :class:`UploadCancelled`, a paused one :class:`UploadPaused`.
        Raises ``TimeoutError`` when ``timeout`` seconds pass first.
        """
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._state in RUNNING_STATES:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(
                        f"task {self.id} ({self.name}) still {self._state.value} after {timeout} s"
                    )
                self._cond.wait(left)
            snap = self._snapshot_locked()
        if raise_on_error:
            if snap.state is TaskState.FAILED:
                raise UploadFailed(f"upload of {self.name} failed: {snap.error}", snap)
            if snap.state is TaskState.CANCELLED:
                raise UploadCancelled(f"upload of {self.name} was cancelled", snap)
            if snap.state is TaskState.PAUSED:
                raise UploadPaused(f"upload of {self.name} was paused (task {self.id})", snap)
        return snap

    # ------------------------------------------------------------------ engine side
    def _set_state_locked(self, state: TaskState, error: TaskError | None = None) -> None:
        if state is not self._state and state not in TRANSITIONS[self._state]:
            raise IllegalTransition(
                f"task {self.id}: {self._state.value} -> {state.value} is not a legal transition"
            )
        self._state = state
        if error is not None:
            self._error = error
        if state in FINISHED_STATES:
            self._finished_at = time.time()
        self._cond.notify_all()
        self._host.post(TaskEvent("state", self._snapshot_locked()))
        if (
            state in (TaskState.PAUSED, TaskState.FAILED)
            and self._host.journaled
            and not (self._error is not None and self._error.code in _SPEC_INCOMPLETE)
        ):
            # The journal keeps the last state and error: a later process's offer says why
            # the task stopped. Not durable: a lost note costs no byte.
            self._host.save(self, durable=False)

    def _set_state(self, state: TaskState, error: TaskError | None = None) -> None:
        with self._cond:
            self._set_state_locked(state, error)

    def start(self) -> None:
        """Engine side: queue the first run of a new or adopted task."""
        with self._cond:
            gen = self._gen
        self._host.enqueue(self, gen)

    def fail(self, error: TaskError) -> None:
        """Engine side: the task cannot run (e.g. a journaled task whose secrets are missing)."""
        self._set_state(TaskState.FAILED, error)

    def journal_record(self) -> JournalRecord | None:
        """What the journal keeps of this task; ``None`` when it keeps nothing (no path, cancelled)."""
        with self._cond:
            if not self._journalable or self._state is TaskState.CANCELLED:
                return None
            return JournalRecord.of(
                self.id,
                self.spec,
                total=self.total,
                ranges=self._ranges,
                path=self._path,
                identity=self._identity,
                driver=self._driver,
                labels=self._labels,
                state=self._state.value,
                error=_error_record(self._error),
            )

    def journal_snapshot(self) -> tuple[int, JournalRecord | None]:
        """Engine side: :meth:`journal_record`, numbered (later snapshots get larger numbers)."""
        with self._cond:
            self._journal_seq += 1
            return self._journal_seq, self.journal_record()

    def journal_newer(self, seq: int | None) -> bool:
        """Engine side, under its journal lock: whether snapshot ``seq`` is newer than what
        was written, recording it as written if so; ``None``: the entry is gone for good."""
        if seq is None:
            self._journal_written = None
            return False
        if self._journal_written is None or seq <= self._journal_written:
            return False
        self._journal_written = seq
        return True

    def open_source(self) -> OpenedSource:
        """Engine side: the task's source, opened again after a restart and checked unchanged."""
        if self._opened is None and self.spec.files:
            from .multifile import reopen_session

            self._opened = reopen_session(self.spec.files)
        elif self._opened is None:
            if self._path is None:
                raise SourceChangedError(
                    "the in-memory source of this task is gone (it lived in another process)"
                )
            self._opened = reopen_path(self._path, self._identity)
        else:
            self._opened.check_unchanged()
        return self._opened

    def _cleanup(self, remove_journal: bool) -> None:
        if remove_journal:
            self._host.remove(self)
            if self._lock_file is not None:
                self._lock_file.release(remove=True)
                self._lock_file = None
        if self._opened is not None:
            self._opened.close()
            self._opened = None

    def release(self) -> None:
        """Engine shutdown: let another process take the task over."""
        if self._lock_file is not None:
            self._lock_file.release()
            self._lock_file = None
        if self._opened is not None and self._journalable:
            self._opened.close()
            self._opened = None

    def begin(self, gen: int) -> _TaskRun | None:
        """A worker takes the task: queued -> connecting; ``None`` when this run is stale."""
        with self._cond:
            if self._gen != gen or self._state is not TaskState.QUEUED:
                return None
            self._want = None
            self._resume_pending = False
            self._inflight = 0
            if not self._rescheduled:  # a run after a backoff continues the same attempt count
                self._sent = 0
                self._attempts = 0
            self._rescheduled = False
            self._started_at = self._started_at or time.time()
            self._set_state_locked(TaskState.CONNECTING)
        return _TaskRun(self)

    def settle(self, result: Any = None, exc: BaseException | None = None) -> None:
        """The run ended, with ``result`` or with ``exc``: move to the state that follows."""
        with self._cond:
            self._inflight = 0
            self._aborters.clear()
        if exc is None:
            self._cleanup(remove_journal=True)  # before the state: a waiter sees a clean journal
            with self._cond:
                self._result = result
                self._acked = self.total
                self._ranges = RangeSet([(0, self.total)]) if self.total else RangeSet()
                self._error = None
                self._retrying = False
                self._want = None
                self.backoff = None
                self._set_state_locked(TaskState.DONE)
            return
        if isinstance(exc, Interrupted):
            if exc.reason == "cancel":
                self._cleanup(remove_journal=True)
                self._set_state(TaskState.CANCELLED)
                return
            with self._cond:
                if not self._resume_pending:
                    self._set_state_locked(TaskState.PAUSED)
                    return
                self._resume_pending = False
                self._set_state_locked(TaskState.QUEUED)
                gen = self._gen = self._gen + 1
            self._host.enqueue(self, gen)
            return
        if isinstance(exc, Reschedule):
            # A pause or cancel that came while the run was ending still wins over the backoff
            # (it used to be dropped, and the timer ran the paused task again).
            with self._cond:
                want = self._want
            if want == "cancel":
                self._cleanup(remove_journal=True)
                self._set_state(TaskState.CANCELLED)
                return
            with self._cond:
                if self._want == "pause":
                    self._want = None
                    self._set_state_locked(TaskState.PAUSED)
                    return
                self._want = None
                self._rescheduled = True
                self._set_state_locked(TaskState.QUEUED)
                gen = self._gen = self._gen + 1
            self._host.enqueue(self, gen, exc.delay)
            return
        self._retrying = False
        if isinstance(exc, StepFailed):
            self._set_state(TaskState.FAILED, exc.error)
        elif isinstance(exc, (SourceChangedError, ShortReadError)):
            self._set_state(TaskState.FAILED, TaskError(str(exc), code="source-changed"))
        elif isinstance(exc, IllegalTransition):
            raise exc
        else:  # a bug or an unexpected environment: fail the task, keep the engine
            log.error("nbupload: task %s failed unexpectedly", self.id, exc_info=exc)
            self._set_state(TaskState.FAILED, TaskError(f"internal error: {type(exc).__name__}: {exc}"))

    def announce(self) -> None:
        """Post the task's snapshot as a state event (the engine, once a task exists)."""
        with self._cond:
            self._host.post(TaskEvent("state", self._snapshot_locked()))

    def _progress(self, force: bool = False) -> None:
        # Snapshot and post under the task's lock, as state changes are: events then reach the
        # dispatcher in the order of their snapshots. A progress snapshot taken outside the lock
        # could be posted after a later state change (a stream thread preempted between the two)
        # and leave a finished task's row saying "connecting, 0 B" for good.
        with self._cond:
            now = time.monotonic()
            if not force and now - self._last_progress_post < 0.02:
                return
            self._last_progress_post = now
            self._host.post(TaskEvent("progress", self._snapshot_locked()))


class _TaskRun:
    """The :class:`~nbupload.engine.run.RunHandle` of one run of a task (see there)."""

    def __init__(self, task: Task) -> None:
        self._t = task
        self.memo = task._memo

    @property
    def driver_state(self) -> DriverState:
        return self._t._driver

    def set_driver_state(self, state: DriverState, *, save: bool = False, durable: bool = True) -> None:
        t = self._t
        with t._cond:
            t._driver = state
        if save:
            t._host.save(t, durable=durable)

    @property
    def ranges(self) -> RangeSet:
        return self._t._ranges

    def check(self) -> None:
        want = self._t._want
        if want is not None:
            raise Interrupted(want)

    def sleep(self, seconds: float) -> None:
        t = self._t
        t._wake.clear()
        self.check()
        if seconds > 0:
            t._wake.wait(seconds)
        self.check()

    def on_abort(self, abort: Callable[[], None]) -> Callable[[], None]:
        t = self._t
        with t._cond:
            t._aborters.add(abort)
            late = t._want is not None
        if late:
            abort()

        def unregister() -> None:
            with t._cond:
                t._aborters.discard(abort)

        return unregister

    def add_sent(self, n: int) -> None:
        t = self._t
        with t._cond:
            t._sent += n
            t._inflight += n
        t._progress()

    def end_request(self, n: int) -> None:
        t = self._t
        with t._cond:
            t._inflight = max(0, t._inflight - n)

    def acknowledge(self, ranges: RangeSet) -> None:
        t = self._t
        with t._cond:
            merged = t._ranges | ranges.clip(t.total) if t.total else t._ranges | ranges
            grew = merged != t._ranges
            t._ranges = merged
            t._acked = max(t._acked, merged.covered())
            t._retrying = False
            t._rate.update(t._acked)
        if grew:
            # Uploader progress need be neither durable nor immediate: a resume asks the server
            # which ranges it holds; it is written off this thread (see .saver). A WCS position
            # is the client's own record that judges a replay (B5): kept durable and in order,
            # so a power loss cannot turn our own appends into a "conflict".
            if t.protocol == "wcs-append":
                t._host.save(t, durable=True)
            else:
                t._host.save_later(t)
        t._progress(force=True)

    def set_acked_exact(self, ranges: RangeSet) -> None:
        t = self._t
        with t._cond:
            t._ranges = t._ranges | ranges
            t._acked = max(t._acked, t._ranges.covered())
            t._rate.reset(t._acked)
        t._progress(force=True)

    def report_error(self, error: TaskError) -> None:
        t = self._t
        with t._cond:
            t._error = error
            t._retrying = True
            t._host.post(TaskEvent("error", t._snapshot_locked()))  # in order: see Task._progress
        if t._host.journaled:
            t._host.save(t, durable=False)  # why it is retrying, should the process die now

    def note_attempt(self) -> None:
        with self._t._cond:
            self._t._attempts += 1

    def set_state_uploading(self) -> None:
        t = self._t
        with t._cond:
            if t._state is TaskState.CONNECTING:
                t._set_state_locked(TaskState.UPLOADING)

    def set_chunk_size(self, size: int) -> None:
        self._t._chunk_size = size

    def save(self, durable: bool = True) -> None:
        self._t._host.save(self._t, durable=durable)

    def save_later(self) -> None:
        self._t._host.save_later(self._t)


def _error_record(error: TaskError | None) -> dict[str, Any] | None:
    """What the journal keeps of an error: its code and its text (which never holds a secret)."""
    if error is None:
        return None
    return {"code": error.code, "text": str(error), "retryable": error.retryable}
