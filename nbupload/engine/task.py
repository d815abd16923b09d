"""A task: one upload, its state machine, counters and controls.

Front ends read :class:`~nbupload.engine.state.TaskSnapshot` values and call
:meth:`Task.pause`, :meth:`Task.resume`, :meth:`Task.cancel` and :meth:`Task.retry`; the
engine's worker threads call :meth:`Task._run`. Every state change goes through
:meth:`Task._set_state`, which posts an event the dispatcher never drops.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..protocols.multipart import ShortReadError
from ..protocols.ranges import RangeSet
from .errors import Interrupted, StepFailed, UploadCancelled, UploadFailed, UploadPaused
from .events import RateMeter
from .journal import TaskLock, redact_url, split_secrets
from .sources import FileIdentity, OpenedSource, SourceChangedError, reopen_path
from .state import ACTIVE_STATES, TaskError, TaskEvent, TaskSnapshot, TaskState

if TYPE_CHECKING:
    from .credentials import WcsCredentials
    from .engine import Engine

__all__ = ["PROTOCOLS", "Task", "TaskSpec"]

log = logging.getLogger("nbupload.engine")

PROTOCOLS = ("uploader", "plain", "wcs-append")


@dataclass
class TaskSpec:
    """Everything a task needs to (re)start. Secret values live only here, in memory."""

    protocol: str
    url: str
    filename: str
    field_name: str = "file"
    fields: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    key: str | None = None
    mime: str | None = None
    chunk_size: int = 4 << 20
    boundary: str = ""
    credentials: WcsCredentials | None = field(default=None, repr=False)

    def journal_data(self) -> dict[str, Any]:
        """The JSON-safe, secret-free part of the spec."""
        fields_kept, fields_secret = split_secrets(self.fields)
        headers_kept, headers_secret = split_secrets(self.headers)
        url, url_secret = redact_url(self.url, mask=None)
        data: dict[str, Any] = {
            "protocol": self.protocol,
            "url": url,
            "filename": self.filename,
            "field_name": self.field_name,
            "fields": fields_kept,
            "headers": headers_kept,
            "secret_names": {"fields": fields_secret, "headers": headers_secret, "url": url_secret},
            "key": self.key,
            "mime": self.mime,
            "chunk_size": self.chunk_size,
            "boundary": self.boundary,
        }
        if self.credentials is not None:
            data["wcs"] = {"scope": self.credentials.scope, "access_key": self.credentials.access_key}
        return data


class Task:
    """One upload. Thread-safe; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        task_id: str,
        spec: TaskSpec,
        opened: OpenedSource | None,
        *,
        total: int,
        path: str | None = None,
        identity: FileIdentity | None = None,
        lock: TaskLock | None = None,
        acked: RangeSet | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._engine = engine
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
        self.total = total
        self._sent = 0
        self._inflight = 0
        self._ranges = acked or RangeSet()
        self._acked = self._ranges.covered()
        self._error: TaskError | None = None
        self._result: Any = None
        self._attempts = 0
        self._started_at: float | None = None
        self._finished_at: float | None = None
        self._rate = RateMeter()
        self._last_progress_post = 0.0
        #: driver state carried across runs (uploader mode, WCS position); journaled
        self.extra: dict[str, Any] = dict(extra or {})

    # ------------------------------------------------------------------ public view
    @property
    def name(self) -> str:
        """What the user recognises: the file name."""
        return self.spec.filename

    @property
    def protocol(self) -> str:
        return self.spec.protocol

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
    def persistent(self) -> bool:
        """Whether the journal keeps this task across process restarts (path sources only).

        Tasks of in-memory sources (bytes, arrays, file objects without a path) are
        resumable within this process only."""
        return self._path is not None and self._engine._journal is not None

    def snapshot(self) -> TaskSnapshot:
        with self._cond:
            return self._snapshot_locked()

    def _snapshot_locked(self) -> TaskSnapshot:
        remaining = self.total - self._acked
        active = self._state in (TaskState.UPLOADING, TaskState.CONNECTING)
        rate = self._rate.rate if active else 0.0
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
            eta=(remaining / rate if rate > 0 else None) if active else None,
            error=self._error,
            result=self._result,
            attempts=self._attempts,
            started_at=self._started_at,
            finished_at=self._finished_at,
            inflight=self._inflight,
        )

    def __repr__(self) -> str:
        from ..units import format_size

        err = f" error={str(self._error)!r}" if self._error and self._state is TaskState.FAILED else ""
        return (
            f"<Task {self.id} {self.name!r} {self.protocol} {self._state.value} "
            f"{format_size(self._acked)}/{format_size(self.total)} -> {self.url}{err}>"
        )

    # ------------------------------------------------------------------ controls
    def pause(self) -> None:
        """Stop soon; keep everything acknowledged. No-op unless queued or running."""
        with self._cond:
            if self._state is TaskState.QUEUED:
                self._set_state_locked(TaskState.PAUSED)
            elif self._state in ACTIVE_STATES:
                self._want = "pause"
                self._resume_pending = False
                self._wake.set()

    def cancel(self) -> None:
        """Stop soon and forget the task (its journal entry goes). Final."""
        with self._cond:
            if self._state in (TaskState.DONE, TaskState.CANCELLED):
                return
            if self._state in (TaskState.CONNECTING, TaskState.UPLOADING):
                self._want = "cancel"
                self._wake.set()
                return
            self._gen += 1  # a queued run must not start
            self._cleanup(remove_journal=True)
            self._set_state_locked(TaskState.CANCELLED)

    @property
    def can_resume(self) -> bool:
        """Whether :meth:`resume` would do something: paused, failed, or a pause still pending."""
        with self._cond:
            return self._state in (TaskState.PAUSED, TaskState.FAILED) or (
                self._state in ACTIVE_STATES and self._want == "pause"
            )

    def resume(self) -> None:
        """Paused or failed: queue the task again; pausing: withdraw the pause. No-op otherwise."""
        with self._cond:
            if self._state in ACTIVE_STATES and self._want == "pause":
                self._want = None
                self._resume_pending = True
                return
            if self._state not in (TaskState.PAUSED, TaskState.FAILED):
                return
            self._error = None
            self._set_state_locked(TaskState.QUEUED)
            gen = self._gen = self._gen + 1
        self._engine._enqueue(self, gen)

    def retry(self) -> None:
        """Failed: queue the task again (the server is asked what it holds first)."""
        if self._state is TaskState.FAILED:
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
            while self._state in ACTIVE_STATES:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"task {self.id} ({self.name}) still {self._state.value} after {timeout} s")
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
        self._state = state
        if error is not None:
            self._error = error
        if state in (TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED):
            self._finished_at = time.time()
        self._cond.notify_all()
        self._engine._post(TaskEvent("state", self._snapshot_locked()))

    def _set_state(self, state: TaskState, error: TaskError | None = None) -> None:
        with self._cond:
            self._set_state_locked(state, error)

    def check(self) -> None:
        """Raise :class:`Interrupted` when pause or cancel was asked (called between pieces)."""
        want = self._want
        if want is not None:
            raise Interrupted(want)

    def sleep(self, seconds: float) -> None:
        """Back off, waking at once for pause or cancel."""
        self._wake.clear()
        self.check()
        if seconds > 0:
            self._wake.wait(seconds)
        self.check()

    def add_sent(self, n: int) -> None:
        with self._cond:
            self._sent += n
            self._inflight += n
        self._progress()

    def end_request(self) -> None:
        with self._cond:
            self._inflight = 0

    def acknowledge(self, ranges: RangeSet) -> None:
        """The server holds ``ranges`` (added to what we know); journal and report it."""
        with self._cond:
            merged = self._ranges | ranges.clip(self.total) if self.total else self._ranges | ranges
            grew = merged != self._ranges
            self._ranges = merged
            self._acked = max(self._acked, merged.covered())
            self._inflight = 0
            self._rate.update(self._acked)
        if grew:
            # Uploader progress need not be durable: a resume asks the server which ranges it
            # holds. A WCS position is the client's own record that judges a replay (B5): kept
            # durable, so a power loss cannot turn our own appends into a "conflict".
            self._engine._journal_save(self, durable=self.protocol == "wcs-append")
        self._progress(force=True)

    def set_acked_exact(self, ranges: RangeSet) -> None:
        """What the server reports holding at (re)start, shown as is (never below before)."""
        with self._cond:
            self._ranges = self._ranges | ranges
            self._acked = max(self._acked, self._ranges.covered())
            self._rate.reset(self._acked)
        self._progress(force=True)

    def report_error(self, error: TaskError) -> None:
        """A failure that will be retried: an ``"error"`` event."""
        with self._cond:
            self._error = error
            snap = self._snapshot_locked()
        self._engine._post(TaskEvent("error", snap))

    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress_post < 0.02:
            return
        self._last_progress_post = now
        self._engine._post(TaskEvent("progress", self.snapshot()))

    def _source(self) -> OpenedSource:
        if self._opened is None:
            if self._path is None:
                raise SourceChangedError("the in-memory source of this task is gone (it lived in another process)")
            self._opened = reopen_path(self._path, self._identity)
        else:
            self._opened.check_unchanged()
        return self._opened

    def _cleanup(self, remove_journal: bool) -> None:
        if remove_journal:
            self._engine._journal_remove(self)
            if self._lock_file is not None:
                self._lock_file.release(remove=True)
                self._lock_file = None
        if self._opened is not None:
            self._opened.close()
            self._opened = None

    def _release(self) -> None:
        """Engine shutdown: let another process take the task over."""
        if self._lock_file is not None:
            self._lock_file.release()
            self._lock_file = None
        if self._opened is not None and self._path is not None:
            self._opened.close()
            self._opened = None

    def _run(self, gen: int) -> None:
        from .drivers import run_driver

        with self._cond:
            if self._gen != gen or self._state is not TaskState.QUEUED:
                return
            self._want = None
            self._resume_pending = False
            self._sent = 0
            self._inflight = 0
            self._attempts = 0
            self._started_at = self._started_at or time.time()
            self._set_state_locked(TaskState.CONNECTING)
        try:
            result = run_driver(self)
        except Interrupted as exc:
            self.end_request()
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
            self._engine._enqueue(self, gen)
            return
        except StepFailed as exc:
            self.end_request()
            self._set_state(TaskState.FAILED, exc.error)
            return
        except (SourceChangedError, ShortReadError) as exc:
            self.end_request()
            self._set_state(TaskState.FAILED, TaskError(str(exc), code="source-changed"))
            return
        except Exception as exc:  # a bug or an unexpected environment: fail the task, keep the engine
            log.exception("nbupload: task %s failed unexpectedly", self.id)
            self._set_state(TaskState.FAILED, TaskError(f"internal error: {type(exc).__name__}: {exc}"))
            return
        self._cleanup(remove_journal=True)  # before the state: a waiter sees a clean journal
        with self._cond:
            self._result = result
            self._acked = self.total
            self._ranges = RangeSet([(0, self.total)]) if self.total else RangeSet()
            self._inflight = 0
            self._error = None
            self._want = None
            self._set_state_locked(TaskState.DONE)

    # counters for drivers
    def note_attempt(self) -> None:
        with self._cond:
            self._attempts += 1

    def set_state_uploading(self) -> None:
        with self._cond:
            if self._state is TaskState.CONNECTING:
                self._set_state_locked(TaskState.UPLOADING)
