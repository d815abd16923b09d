"""The engine: a bounded pool of worker threads running tasks, the HTTP clients their
streams borrow, the journal, and event delivery to subscribers.

A worker runs a task as ``handle = task.begin(gen)`` -> ``run_driver(ctx, handle)`` ->
``task.settle(...)``. Tasks know the engine only as a :class:`~nbupload.engine.task.TaskHost`
(:class:`_Host`); drivers only as a :class:`~nbupload.engine.run.RunContext`. A run that has
to wait out a backoff gives its worker back and is queued again by a timer. Runs wait in two
lanes (:mod:`nbupload.engine.lanes`): tasks adopted from the journal run in the background
lane, so they never delay an upload started here.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..errors import CredentialsError, FileFieldError, TaskLockedError
from ..protocols import PROTOCOLS
from ..protocols.multipart import new_boundary
from ..protocols.ranges import RangeSet
from .config import EngineConfig
from .credentials import resolve_wcs_credentials
from .drivers import run_driver
from .driverstate import DriverState, labels_of
from .events import Dispatcher
from .journal import Journal, JournalEntry, JournalRecord
from .lanes import Lanes
from .multifile import OpenedSession, open_session
from .ratelimit import SharedCap, Throttle, TokenBucket
from .redact import redact_url
from .retry import Backoff
from .run import RunContext
from .saver import ProgressSaver
from .sources import open_source
from .spec import TaskSpec
from .state import RUNNING_STATES, TaskError, TaskEvent, TaskState
from .task import Task
from .transport import ClientPool

__all__ = ["Engine", "UnfinishedTask"]

log = logging.getLogger("nbupload.engine")

_NEEDS_AGAIN = ("needs-secrets", "needs-credentials")


@dataclass(frozen=True)
class UnfinishedTask:
    """A journal entry no task of this process is running."""

    id: str
    name: str
    url: str
    protocol: str
    acked: int
    total: int
    path: str | None
    locked: bool  # another process is running it right now
    updated_at: float | None
    #: the state it was last in ("paused", "failed", "uploading" when its process died) and why
    state: str | None = None
    error: str | None = None
    error_code: int | str | None = None
    #: what the front end that started it noted (``submit(labels=...)``): notebook, server root
    labels: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["labels"] = dict(self.labels)
        return out


#: the characters of an HTTP field name (RFC 9110 ``token``)
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _clean_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Extra request headers, checked before anything is sent.

    A name must be an HTTP token and a value printable ASCII: anything else would fail deep in
    the transport (``UnicodeEncodeError``) or, worse, split the request. Values are never put in
    the message: a header may carry a secret.
    """
    out: dict[str, str] = {}
    for key, value in (headers or {}).items():
        k, v = str(key).strip(), str(value).strip()
        if not k or not set(k) <= _TOKEN_CHARS:
            raise ValueError(
                f"invalid header name {k!r}: use letters, digits and !#$%&'*+-.^_`|~ only (no spaces or ':')"
            )
        if any(not (" " <= c <= "~" or c == "\t") for c in v):
            raise ValueError(
                f"the value of header {k!r} must be printable ASCII on one line "
                "(percent-encode anything else, e.g. urllib.parse.quote)"
            )
        out[k] = v
    return out


def _source_name(source: Any) -> str | None:
    """The file name of a path source (the WCS key a bare-bucket scope defaults to)."""
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source)) or None
    return None


def _base(url: str) -> tuple[str, str, int | None, str]:
    u = httpx.URL(url)
    return (u.scheme, u.host, u.port, u.path)


class Engine:
    """Runs uploads. Thread-safe. See ``docs/engine.md``."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        **changes: Any,
    ) -> None:
        """``transport`` replaces the network for every request (tests: ``httpx.MockTransport``;
        pause and cancel then act between body pieces instead of cutting the connection)."""
        self.config = (
            (config or EngineConfig()).with_changes(**changes) if changes else (config or EngineConfig())
        )
        self._lock = threading.RLock()
        self._tasks: dict[str, Task] = {}
        self._lanes: Lanes[tuple[Task, int]] = Lanes(self.config.workers)
        #: ids of tasks adopted from the journal: their runs wait in the background lane
        self._background: set[str] = set()
        self._workers: list[threading.Thread] = []
        self._transport = transport
        self._clients = ClientPool(self.config, transport)
        self._cap = SharedCap(self.config.max_rate)  # max_rate: one bucket for every task and stream
        self._old_clients: list[ClientPool] = []
        self._timers: set[threading.Timer] = set()
        self._dispatcher = Dispatcher(self.config.progress_interval)
        self._journal = Journal(self.config.tasks_dir) if self.config.journal else None
        self._unjournaled: set[str] = set()  # tasks submitted with journal=False
        #: progress saves, off the stream threads (see .saver); every journal write holds _journal_io
        self._saver: ProgressSaver[Task] = ProgressSaver(self._save_progress)
        self._journal_io = threading.Lock()
        self._url_checked = ""  # the last URL submit() found valid
        self._closed = False
        #: :meth:`on_shutdown` hooks by key: (stop, released), in the order they were added
        self._shutdown_hooks: dict[object, tuple[Callable[[], None], Callable[[], None] | None]] = {}
        self._hooks_gone: list[object] = []  # keys removed, to skip (see on_shutdown)
        self._host = _Host(self)

    @property
    def closed(self) -> bool:
        """Whether :meth:`shutdown` ran (a closed engine takes no new task)."""
        return self._closed

    # ------------------------------------------------------------------ configuration
    def configure(self, **changes: Any) -> EngineConfig:
        """Change settings; running requests keep theirs, the next ones use the new ones."""
        with self._lock:
            old = self.config
            self.config = new = old.with_changes(**changes)
            self._dispatcher.interval = new.progress_interval
            self._cap.set(new.max_rate)
            if (new.journal, new.journal_dir) != (old.journal, old.journal_dir):
                self._journal = Journal(new.tasks_dir) if new.journal else None
            if (
                new.verify,
                new.user_agent,
                new.connect_timeout,
                new.read_timeout,
                new.write_timeout,
                new.pool_timeout,
            ) != (
                old.verify,
                old.user_agent,
                old.connect_timeout,
                old.read_timeout,
                old.write_timeout,
                old.pool_timeout,
            ):
                self._old_clients.append(self._clients)
                self._clients = ClientPool(new, self._transport)
            start = self._ensure_workers()
        for t in start:
            t.start()
        return new

    def _timeout(self) -> httpx.Timeout:
        """Per-request timeouts; no phase may sit without moving bytes past ``stall_timeout``."""
        c = self.config
        return httpx.Timeout(
            connect=min(c.connect_timeout, c.stall_timeout),
            read=min(c.read_timeout, c.stall_timeout),
            write=min(c.write_timeout, c.stall_timeout),
            pool=c.pool_timeout,
        )

    def _ensure_workers(self) -> list[threading.Thread]:
        """Up to ``2 x workers`` threads (``workers`` runs per lane at most, see :mod:`.lanes`),
        as many more as runs wait beyond the idle threads; surplus ones retire. Under
        ``_lock``; the caller starts the threads returned *after* releasing it (``start()``
        waits for the new thread to run, and a thread may run a weakref finalizer, anything,
        before it says it started)."""
        self._lanes.limit = self.config.workers
        alive = [t for t in self._workers if t.is_alive() or t.ident is None]  # or not started yet
        self._workers = alive
        want = 2 * self.config.workers
        if len(alive) > want:
            self._lanes.retire(len(alive) - want)  # idle threads leave, busy ones after their run
            return []
        new = []
        for _ in range(0 if self._closed else min(want - len(alive), self._lanes.shortage())):
            t = threading.Thread(target=self._work, name=f"nbupload-worker-{len(self._workers)}", daemon=True)
            self._workers.append(t)
            new.append(t)
        return new

    def _work(self) -> None:
        while True:
            got = self._lanes.take()
            if got is None:
                with self._lock:
                    me = threading.current_thread()
                    if me in self._workers:
                        self._workers.remove(me)
                return
            (task, gen), background = got
            try:
                self._run(task, gen)
            except Exception:  # pragma: no cover - settle catches everything but bugs in the table
                log.exception("nbupload: worker crashed on task %s", task.id)
            finally:
                self._lanes.done(background)

    def _run(self, task: Task, gen: int) -> None:
        handle = task.begin(gen)
        if handle is None:
            return
        try:
            opened = task.open_source()
            if task.total != opened.size:
                from ..errors import SourceChangedError

                raise SourceChangedError(f"{task.name}: size is now {opened.size} bytes, was {task.total}")
            c = self.config
            if task.backoff is None:
                task.backoff = Backoff(c.retries, c.backoff_base, c.backoff_cap, c.retry_deadline)
            ctx = RunContext(
                spec=task.spec,
                name=task.name,
                total=task.total,
                config=c,
                source=opened.source,
                check_source=opened.check_unchanged,
                clients=self._clients,
                timeout=self._timeout(),
                backoff=task.backoff,
                throttle=Throttle(
                    TokenBucket(task.spec.limit_rate) if task.spec.limit_rate else None, self._cap
                ),
            )
            result = run_driver(ctx, handle)
        except BaseException as exc:  # noqa: BLE001 - settle decides what it means
            task.settle(exc=exc)
            return
        task.settle(result)

    def _enqueue(self, task: Task, gen: int, delay: float = 0.0) -> None:
        with self._lock:
            if self._closed:
                if delay > 0:
                    return  # a backoff timer that fired after shutdown: the journal keeps the task
                raise RuntimeError("the engine was shut down")
            if delay > 0:
                timer = threading.Timer(delay, self._timer_fired, (task, gen))
                timer.daemon = True
                timer.name = "nbupload-backoff"
                self._timers.add(timer)
                timer.start()
                return
            background = task.id in self._background
        if self._lanes.put((task, gen), background=background):  # more runs wait than threads
            with self._lock:
                start = self._ensure_workers()
            for t in start:
                t.start()

    def _timer_fired(self, task: Task, gen: int) -> None:
        with self._lock:
            self._timers = {t for t in self._timers if t.is_alive() and t is not threading.current_thread()}
            if self._closed:
                return
        self._enqueue(task, gen)

    # ------------------------------------------------------------------ events
    def subscribe(self, callback: Callable[[TaskEvent], None]) -> Callable[[], None]:
        """``callback(TaskEvent)`` from the engine's event thread; returns an unsubscribe."""
        return self._dispatcher.subscribe(callback)

    def _post(self, event: TaskEvent) -> None:
        self._dispatcher.post(event)

    def flush_events(self, timeout: float = 5.0) -> None:
        """Wait until every state event posted so far has been delivered."""
        self._dispatcher.flush(timeout)

    # ------------------------------------------------------------------ journal
    def _journal_save(self, task: Task, *, durable: bool = True) -> None:
        journal = self._journal
        if journal is None or task.id in self._unjournaled:
            return
        seq, record = task.journal_snapshot()
        if record is None:
            return
        with self._journal_io:
            # Saves come from the stream threads, the progress saver and state changes: a record
            # taken before the one on disk is stale, and an ended task's entry stays removed.
            if not task.journal_newer(seq):
                return
            try:
                journal.write(task.id, record.to_json(), durable=durable)
            except OSError as exc:  # the upload goes on; only a restart would lose ground
                log.warning("nbupload: cannot write the journal for task %s: %s", task.id, exc)

    def _save_progress(self, task: Task) -> None:
        self._journal_save(task, durable=False)

    def _journal_remove(self, task: Task) -> None:
        self._saver.discard(task)
        with self._journal_io:
            task.journal_newer(None)  # no later save writes it again
            if self._journal is not None and task.id not in self._unjournaled:
                self._journal.remove(task.id)

    # ------------------------------------------------------------------ tasks
    def submit(
        self,
        source: Any,
        url: str,
        *,
        protocol: str = "uploader",
        chunk_size: int | None = None,
        name: str = "file",
        filename: str | None = None,
        fields: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        token: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        scope: str | None = None,
        mime: str | None = None,
        position: int = 0,
        streams: int | None = None,
        chunk_max: int | None = None,
        limit_rate: float | None = None,
        start: bool = True,
        journal: bool = True,
        labels: Mapping[str, str] | None = None,
    ) -> Task:
        """Start uploading ``source`` to ``url``; returns at once with the queued task.

        ``position`` (wcs-append only): the object already holds the source's first
        ``position`` bytes (an earlier upload of a file that has grown since), so appends
        start there; the final hash check still covers the whole object. ``streams``: chunks
        in flight at once for this task (default: the engine's ``streams`` setting);
        ``chunk_max``: the largest its chunks grow to (default: the engine's ``chunk_max``);
        ``limit_rate``: this task's rate cap in bytes per second (the engine's ``max_rate``
        applies as well; the journal keeps it, so a resumed task keeps its cap). For
        wcs-append with a bare-bucket scope (no ``:key``) and no ``key``, the key is the file
        name (every front end gets this rule from here). ``journal=False``: the task keeps no
        journal entry of its own, for a caller that journals it itself (a batch, for files of
        one chunk: its record says what to send again, and one chunk has no held ranges worth
        resuming); it saves a lock file and two fsyncs per small file. ``labels``: short notes
        the journal keeps with the task for the front end that started it (the notebook, the
        embedded server's root), read back in :meth:`unfinished`; never secrets.

        ``source`` may be a mapping of form field names to files (``{"photo": "a.jpg",
        "doc": "b.pdf"}``): one uploader session holding every file (PROTOCOLS.md A7), one
        task. Its field names must be unique and usable, its
        files exist, and it takes neither ``filename``, ``name``, ``key``, ``position`` nor
        ``wcs-append`` (:class:`~nbupload.errors.FileFieldError` says which).
        """
        session = isinstance(source, Mapping)
        if session:
            self._check_session_options(protocol, name, filename, key, position, fields, list(source))
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
        url = str(url)
        if url != self._url_checked:  # a batch submits one URL thousands of times: parse it once
            parsed = httpx.URL(url)
            if parsed.scheme not in ("http", "https") or not parsed.host:
                shown = redact_url(url)[0]
                raise ValueError(f"invalid URL {shown!r}: expected http:// or https:// and a host")
            self._url_checked = url
        chunk = int(chunk_size or self.config.chunk_size)
        if chunk <= 0:
            raise ValueError("chunk_size must be positive")
        if streams is not None and not 1 <= int(streams) <= 64:
            raise ValueError("streams must be between 1 and 64")
        if chunk_max is not None and int(chunk_max) <= 0:
            raise ValueError("chunk_max must be positive")
        if limit_rate is not None and not float(limit_rate) > 0:
            raise ValueError("limit_rate must be positive (bytes per second)")
        creds = None
        if protocol == "wcs-append":
            creds = resolve_wcs_credentials(
                token=token,
                access_key=access_key,
                secret_key=secret_key,
                scope=scope,
                defaults=(self.config.token, self.config.access_key, self.config.secret_key),
                ttl=self.config.token_ttl,
            )
            if not key and not creds.bucket_key[1]:
                key = filename or _source_name(source)
                if not key:
                    raise CredentialsError(
                        "wcs-append needs a key: give key=... or a scope of the form bucket:key"
                    )
        elif token or access_key or secret_key or scope:
            raise ValueError("token, access_key, secret_key and scope are for protocol='wcs-append'")
        if position and protocol != "wcs-append":
            raise ValueError("position is for protocol='wcs-append'")
        opened = open_session(source, mime) if session else open_source(source)
        try:
            if not 0 <= int(position) <= opened.size:
                raise ValueError(f"position {position} is outside the source (0 to {opened.size} bytes)")
            spec = TaskSpec(
                protocol=protocol,
                url=url,
                filename=filename or opened.filename,
                files=opened.files if isinstance(opened, OpenedSession) else (),
                field_name=name,
                fields={str(k): str(v) for k, v in (fields or {}).items()},
                headers=_clean_headers(headers),
                key=key,
                mime=mime,
                chunk_size=chunk,
                boundary=new_boundary(),
                credentials=creds,
                streams=int(streams) if streams is not None else None,
                chunk_max=int(chunk_max) if chunk_max is not None else None,
                limit_rate=float(limit_rate) if limit_rate is not None else None,
            )
            task_id = secrets.token_hex(6)
            lock = None
            if self._journal is not None and opened.persistent and journal:
                lock = self._journal.lock(task_id)
            held = RangeSet([(0, int(position))]) if position else None
            task = Task(
                self._host,
                task_id,
                spec,
                opened,
                total=opened.size,
                lock=lock,
                acked=held,
                driver=DriverState(position=int(position)),
                labels=labels,
            )
        except BaseException:
            opened.close()
            raise
        with self._lock:
            self._tasks[task_id] = task
            if not journal:
                self._unjournaled.add(task_id)
        self._journal_save(task)
        task.announce()
        if start:
            task.start()
        else:
            task.pause()
        return task

    @staticmethod
    def _check_session_options(
        protocol: str,
        name: str,
        filename: str | None,
        key: str | None,
        position: int,
        fields: Mapping[str, str] | None,
        file_fields: list[str],
    ) -> None:
        """What does not go with a multi-file session (each file names itself by its field)."""
        if protocol == "wcs-append":
            raise FileFieldError(
                "several files in one session is an uploader feature: wcs-append uploads one object "
                "per task (upload the files one by one, or as a batch)"
            )
        for given, what in (
            (filename, "filename"),
            (key, "key"),
            (position, "position"),
            (name != "file", "name (the field names are the mapping's keys)"),
        ):
            if given:
                raise FileFieldError(f"{what} names one file: it does not go with a multi-file session")
        clash = sorted(set(fields or {}) & set(file_fields))
        if clash:
            raise FileFieldError(
                f"{', '.join(map(repr, clash))} is both a file field and a data field: "
                "give them different names"
            )

    def tasks(self) -> list[Task]:
        with self._lock:
            return list(self._tasks.values())

    def get(self, task_id: str) -> Task:
        with self._lock:
            try:
                return self._tasks[task_id]
            except KeyError:
                raise KeyError(f"no task {task_id!r} in this process") from None

    def unfinished(self) -> list[UnfinishedTask]:
        """Journal entries not running in this process (id, name, url, protocol, acked, total)."""
        if self._journal is None:
            return []
        with self._lock:
            mine = set(self._tasks)
        out = []
        for entry in self._journal.entries():
            if entry.id in mine:
                continue
            src = entry.data.get("source") or {}
            out.append(
                UnfinishedTask(
                    id=entry.id,
                    name=entry.name,
                    url=entry.url,
                    protocol=entry.protocol,
                    acked=entry.acked,
                    total=entry.total,
                    path=src.get("path"),
                    locked=self._journal.is_locked(entry.id),
                    updated_at=entry.data.get("updated_at"),
                    state=entry.data.get("state"),
                    error=(entry.data.get("error") or {}).get("text"),
                    error_code=(entry.data.get("error") or {}).get("code"),
                    labels=labels_of(entry.data.get("extra")),
                )
            )
        return out

    def resume(
        self,
        task_id: str | None = None,
        *,
        token: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        url: str | None = None,
    ) -> list[Task]:
        """Resume one task (by id) or all: paused or failed ones of this process, and journal
        entries left by a previous process. Credentials and secret headers or fields are
        given again here (or come from configuration and environment); the journal never
        holds them. ``url`` gives the full URL again when its query carried a secret-looking
        parameter (the journal keeps the URL without it). A task another process is running
        raises :class:`TaskLockedError` when asked for by id, and is skipped otherwise."""
        again = dict(
            token=token, access_key=access_key, secret_key=secret_key, headers=headers, fields=fields, url=url
        )
        out: list[Task] = []
        if task_id is not None:
            with self._lock:
                task = self._tasks.get(task_id)
                if task is not None and task.error is not None and task.error.code in _NEEDS_AGAIN:
                    # It lacked credentials or secrets: build it again with what we got now.
                    del self._tasks[task_id]
                    task.release()
                    task = None
            if task is not None:
                task.resume()
                return [task]
            entry = self._journal.read(task_id) if self._journal is not None else None
            if entry is None:
                raise KeyError(f"no unfinished task {task_id!r}")
            return [self._adopt(entry, **again)]
        for task in self.tasks():
            if task.can_resume:
                task.resume()
                out.append(task)
        for info in self.unfinished():
            entry = self._journal.read(info.id) if self._journal is not None else None
            if entry is None:
                continue
            try:
                out.append(self._adopt(entry, **again))
            except TaskLockedError as exc:
                log.info("nbupload: %s", exc)
        return out

    def _adopt(self, entry: JournalEntry, **again: Any) -> Task:
        """A task object for a journal entry, locked by this process and queued."""
        assert self._journal is not None
        lock = self._journal.lock(entry.id)
        try:
            fresh = self._journal.read(entry.id)  # re-read under the lock
            if fresh is None:
                raise KeyError("that task has just finished in another process")
            rec = JournalRecord.from_json(fresh.data)
            spec, problem = self._spec_again(rec, again)
            task = Task(
                self._host,
                rec.id,
                spec,
                None,
                total=rec.total,
                path=rec.path,
                identity=rec.identity,
                lock=lock,
                acked=rec.ranges,
                driver=rec.driver,
                labels=rec.labels,
            )
        except BaseException:
            lock.release()
            raise
        with self._lock:
            self._tasks[task.id] = task
            self._background.add(task.id)
        if problem is not None:
            task.fail(problem)
            return task
        task.announce()
        task.start()
        return task

    def _spec_again(self, rec: JournalRecord, again: Mapping[str, Any]) -> tuple[TaskSpec, TaskError | None]:
        """The spec of a journaled task with its secrets given again, and what is still lacking."""
        hdrs = {**rec.headers, **_clean_headers(again.get("headers"))}
        flds = {**rec.fields, **{str(k): str(v) for k, v in (again.get("fields") or {}).items()}}
        problem: TaskError | None = None
        task_url = rec.url
        given_url = again.get("url")
        if given_url:
            if _base(given_url) != _base(task_url):
                raise ValueError(f"url {redact_url(given_url)[0]!r} is not this task's URL {task_url!r}")
            task_url = given_url
        names = rec.secret_names
        lacking = [f"URL parameter {n}" for n in names.get("url", []) if not given_url]
        lacking += [f"header {n}" for n in names.get("headers", []) if n not in hdrs]
        lacking += [f"field {n}" for n in names.get("fields", []) if n not in flds]
        if lacking:
            problem = TaskError(
                "not written to the journal because they look secret, give them again to resume "
                "(headers=, fields=, url=): " + ", ".join(lacking),
                code="needs-secrets",
            )
        creds = None
        if rec.protocol == "wcs-append":
            try:
                creds = resolve_wcs_credentials(
                    token=again.get("token"),
                    access_key=again.get("access_key") or None,
                    secret_key=again.get("secret_key"),
                    scope=(rec.wcs or {}).get("scope"),
                    defaults=(self.config.token, self.config.access_key, self.config.secret_key),
                    ttl=self.config.token_ttl,
                )
            except CredentialsError as exc:
                problem = TaskError(
                    f"{exc} (credentials are never written to the journal)", code="needs-credentials"
                )
        spec = TaskSpec(
            protocol=rec.protocol,
            url=task_url,
            filename=rec.filename or rec.name,
            field_name=rec.field_name,
            fields=flds,
            headers=hdrs,
            key=rec.key,
            mime=rec.mime,
            chunk_size=rec.chunk_size or self.config.chunk_size,
            boundary=rec.boundary,
            credentials=creds,  # streams: this process's setting
            files=rec.files,
            limit_rate=rec.limit_rate,
        )
        return spec, problem

    def discard(self, task_id: str) -> None:
        """Forget an unfinished task: cancel it here, or remove its journal entry."""
        with self._lock:
            task = self._tasks.get(task_id)
        if task is not None:
            task.cancel()
            return
        if self._journal is None or self._journal.read(task_id) is None:
            raise KeyError(f"no unfinished task {task_id!r}")
        lock = self._journal.lock(task_id)
        self._journal.remove(task_id)
        lock.release(remove=True)

    def forget(self, task_id: str) -> None:
        """Drop a settled task (done, cancelled) from :meth:`tasks`."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is not None and task.state not in RUNNING_STATES and task.state is not TaskState.PAUSED:
                del self._tasks[task_id]
                self._unjournaled.discard(task_id)
                self._background.discard(task_id)

    def on_shutdown(
        self, stop: Callable[[], None], released: Callable[[], None] | None = None
    ) -> Callable[[], None]:
        """Run ``stop()`` first in :meth:`shutdown` (before the tasks are paused) and
        ``released()`` last (once the tasks' locks are released and their events delivered);
        returns a function that removes the hook. For what builds on the engine and holds
        its own state, which the engine must not know of: a batch stops feeding files in
        ``stop`` and lets its lock go in ``released``. Exceptions are logged, not raised."""
        key = object()  # one per hook, so that the same callbacks may be added twice
        with self._lock:
            while self._hooks_gone:  # hooks removed since: forget them now
                self._shutdown_hooks.pop(self._hooks_gone.pop(), None)
            self._shutdown_hooks[key] = (stop, released)

        def remove() -> None:
            # No lock: this runs from weakref finalizers, that is from whatever thread the
            # garbage collector interrupts, maybe one that holds _lock while it waits for a
            # thread to start (a worker that the collector is running this very finalizer in:
            # a deadlock seen in a test run). A list append is atomic; the hook is skipped.
            self._hooks_gone.append(key)

        return remove

    @staticmethod
    def _call_hooks(hooks: list[Callable[[], None]]) -> None:
        for hook in hooks:
            try:
                hook()
            except Exception:  # one hook must not keep the engine running
                log.exception("nbupload: a shutdown hook failed")

    def shutdown(self, wait: bool = True, timeout: float = 10.0) -> None:
        """Pause what is running (the journal keeps it), stop the threads, release locks
        (with the :meth:`on_shutdown` hooks: a batch stops feeding first, lets its lock go last)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            gone = set(self._hooks_gone)
            hooks = [hook for key, hook in list(self._shutdown_hooks.items()) if key not in gone]
        self._call_hooks([stop for stop, _released in hooks])
        with self._lock:  # after the hooks: a task a batch submitted meanwhile is paused too
            tasks = list(self._tasks.values())
        for task in tasks:
            task.pause()
        if wait:
            for task in tasks:
                try:
                    task.wait(timeout)
                except TimeoutError:
                    log.warning("nbupload: task %s did not stop within %s s", task.id, timeout)
        with self._lock:
            timers, self._timers = list(self._timers), set()
        for timer in timers:
            timer.cancel()
        self._lanes.close()
        if wait:
            for t in list(self._workers):
                if t.ident is not None:  # started (one made by an enqueue may not be yet)
                    t.join(timeout)
        self._saver.stop(timeout if wait else 0.5)  # the last acknowledgements, before the locks go
        for task in tasks:
            task.release()
        self._dispatcher.stop(timeout if wait else 0.5)
        with self._lock:
            pools = [*self._old_clients, self._clients]
            self._old_clients = []
        for pool in pools:
            pool.close()
        self._call_hooks([released for _stop, released in hooks if released is not None])

    def __enter__(self) -> Engine:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        states: dict[str, int] = {}
        for t in self.tasks():
            states[t.state.value] = states.get(t.state.value, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no tasks"
        return f"<Engine workers={self.config.workers} {summary}>"


class _Host:
    """The engine as its tasks see it (:class:`~nbupload.engine.task.TaskHost`)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def post(self, event: TaskEvent) -> None:
        self._engine._dispatcher.post(event)

    def enqueue(self, task: Task, gen: int, delay: float = 0.0) -> None:
        self._engine._enqueue(task, gen, delay)

    def save(self, task: Task, durable: bool = True) -> None:
        self._engine._journal_save(task, durable=durable)

    def save_later(self, task: Task) -> None:
        e = self._engine
        if e._journal is not None and task.id not in e._unjournaled:
            e._saver.later(task)

    def remove(self, task: Task) -> None:
        self._engine._journal_remove(task)

    @property
    def journaled(self) -> bool:
        return self._engine._journal is not None
