"""Batches: many files (folders, globs, lists) uploaded as one thing the user steers and sees.

``nbupload.upload_many(["results/", "logs/*.txt"], url)`` (or ``nbupload.upload([...], url)``)
returns a :class:`Batch` at once. The batch expands its paths (:mod:`nbupload.batchpaths`:
relative names such as ``run1/metrics.csv`` are kept, as the uploader ``filename`` or under
the WCS key ``prefix``), then feeds the files to the engine a *window* at a time (a batch of
10,000 files never holds 10,000 open files or queued tasks), and keeps the aggregate:
files done/total, bytes, rate, ETA and the failures with their server codes
(:meth:`Batch.snapshot`). ``pause``/``resume``/``cancel``/``retry`` act on every file;
``batch[name]`` is one file's :class:`~nbupload.engine.Task` for steering it alone.

Layering: a front end at the API level, using only :meth:`Engine.submit` and the public
:class:`Task` controls, so it works with today's engine unchanged; when the engine grows
batches of its own (journaled as one, shown as one row), this module keeps its API and
hands the bookkeeping down.

Skip-unchanged. Every file uploaded is recorded in a small *batch manifest* (JSON lines under
``<journal dir>/batches/``, keyed by protocol, URL without its query, WCS scope and prefix;
no secret in it): size, mtime and what the server said. Re-running the same batch skips a
file whose size and mtime are unchanged *and* which the server still holds, by the check its
protocol offers (``check_remote=True``, the default):

- WCS: an empty append at the recorded size returns the object's hash (B3); it must equal
  the recorded etag (a different size answers 409). A file that only *grew* since (a log)
  and whose recorded part is unchanged (its local etag still matches) is appended from the
  recorded size rather than sent again.
- uploader: on the reference server, ``GET /files/<name>?stat`` must give the same size and
  etag as the local file (the file is still there, unchanged). On a server without that
  route, the protocol's own check: the session's query (its recorded boundary) must list the
  whole file as held. Otherwise the file is sent again.

The snapshot says how many files were skipped. The batch survives a kernel restart the way
its files do: every file is a journaled engine task, and re-running the same
``upload_many`` call adopts the unfinished journal entries of its files (resuming them where
they stopped) and skips those already done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from .batchpaths import BatchItem, expand_paths
from .engine import Engine, TaskState
from .engine.journal import dumps_text
from .engine.task import Task
from .protocols import uploader, wcs
from .protocols.multipart import BytesSource
from .protocols.ranges import RangeSet

__all__ = ["Batch", "BatchError", "BatchFailure", "BatchSnapshot", "Manifest", "upload_many"]

_HASH_READ = 1 << 20


@dataclass(frozen=True)
class BatchFailure:
    """One file that failed: its name, the server's (or nbupload's) code, HTTP status, message."""

    name: str
    code: str | None
    status: int | None
    message: str

    def __str__(self) -> str:
        code = f" [{self.code}]" if self.code else ""
        return f"{self.name}{code}: {self.message}"


@dataclass(frozen=True)
class BatchSnapshot:
    """The batch at one instant. ``state``: ``running``, ``paused``, ``done`` (every file
    uploaded or skipped), ``failed`` (settled, some failed), ``cancelled``."""

    state: str
    files_total: int
    files_done: int
    files_skipped: int
    files_failed: int
    files_active: int
    files_waiting: int
    bytes_total: int
    bytes_done: int
    rate: float
    eta: float | None
    failures: tuple[BatchFailure, ...]

    @property
    def settled(self) -> bool:
        return self.state in ("paused", "done", "failed", "cancelled")

    def describe(self) -> str:
        """One line: ``12/40 files (3 skipped, 1 failed), 3.1 MiB/9.0 MiB, 2.0 MiB/s``."""
        from .units import format_size

        extra = []
        if self.files_skipped:
            extra.append(f"{self.files_skipped} skipped")
        if self.files_failed:
            extra.append(f"{self.files_failed} failed")
        more = f" ({', '.join(extra)})" if extra else ""
        done = self.files_done + self.files_skipped
        text = (
            f"{done}/{self.files_total} files{more}, {format_size(self.bytes_done)}/"
            f"{format_size(self.bytes_total)}"
        )
        if self.state == "running" and self.rate:
            text += f", {format_size(self.rate)}/s"
        return f"{text} [{self.state}]"


class BatchError(Exception):
    """Raised by ``Batch.wait(raise_on_error=True)``; ``.snapshot.failures`` lists the files."""

    def __init__(self, message: str, snapshot: BatchSnapshot) -> None:
        super().__init__(message)
        self.snapshot = snapshot


class Manifest:
    """What a batch uploaded, one JSON line per file (the last line of a name wins).

    Append-only, so a crash loses at most the line being written (a torn last line is
    ignored). Holds sizes, mtimes, etags and session boundaries: no secret.
    """

    def __init__(self, directory: Path, identity: Mapping[str, str]) -> None:
        text = json.dumps(dict(identity), sort_keys=True)
        self.path = Path(directory) / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.jsonl"
        self.identity = dict(identity)
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        try:
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(rec, dict) and isinstance(rec.get("name"), str):
                        out[rec["name"]] = rec
        except FileNotFoundError:
            pass
        return out

    def record(self, item: BatchItem, **extra: Any) -> None:
        rec = {"name": item.name, "size": item.size, "mtime_ns": item.mtime_ns, "at": time.time(), **extra}
        line = dumps_text(rec, separators=(",", ":")) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                head = {"name": None, "identity": self.identity}
                line = json.dumps(head, separators=(",", ":")) + "\n" + line
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)


def _local_etag(path: str, length: int | None = None) -> str | None:
    """The WCS etag of a local file (or of its first ``length`` bytes); None if unreadable."""
    hasher = wcs.EtagHasher()
    try:
        with open(path, "rb") as f:
            left = length
            while left is None or left > 0:
                data = f.read(_HASH_READ if left is None else min(_HASH_READ, left))
                if not data:
                    break
                hasher.update(data)
                if left is not None:
                    left -= len(data)
    except OSError:
        return None
    if length is not None and hasher.size != length:
        return None
    return hasher.etag()


class _Plan:
    """What to do with one file: ``skip``, ``upload``, or ``append`` from ``position``."""

    __slots__ = ("action", "item", "position")

    def __init__(self, item: BatchItem, action: str, position: int = 0) -> None:
        self.item = item
        self.action = action
        self.position = position


class Batch:
    """Files uploaded as one; see the module. Thread-safe."""

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
    ) -> None:
        self.engine = engine
        self.url = url
        self.items = list(items)
        self.prefix = prefix
        self.protocol = str(submit.get("protocol", "uploader"))
        self._submit = dict(submit)
        self._manifest = manifest
        self._records = manifest.load() if manifest is not None else {}
        self._check_remote = check_remote
        self._window = window or max(4, engine.config.workers * 4)
        self._cond = threading.Condition()
        self._waiting: deque[BatchItem] = deque(self.items)
        self._by_name = {item.name: item for item in self.items}
        self._tasks: dict[str, Task] = {}  # every task this batch ran, by file name
        self._active: dict[str, Task] = {}  # submitted, not done/failed/cancelled
        self._done: set[str] = set()
        self._skipped: set[str] = set()
        self._cancelled: set[str] = set()
        self._failed: dict[str, BatchFailure] = {}
        self._ids: set[str] = set()
        self._paused = False
        self._stopped = False
        self._closed = False
        self._http: httpx.Client | None = None
        self._wcs_creds: Any = None
        self._adopted = 0
        self._planning = 0  # files taken from the queue, not yet skipped or submitted
        self._started_feeding = False
        self._unsubscribe: Any = None  # the engine event subscription, while the feeder runs
        self._thread: threading.Thread | None = None
        with self._cond:
            self._ensure_feeder(adopt=True)

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
        return f"<Batch {self.snapshot().describe()} -> {self.url.split('?')[0]}>"

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, name: str) -> Task:
        """The task of file ``name`` (``KeyError`` until it was submitted)."""
        with self._cond:
            return self._tasks[name]

    @property
    def tasks(self) -> dict[str, Task]:
        with self._cond:
            return dict(self._tasks)

    @property
    def skipped(self) -> list[str]:
        """Names skipped as already uploaded and unchanged."""
        with self._cond:
            return sorted(self._skipped)

    # ------------------------------------------------------------------ controls
    def pause(self) -> None:
        """Stop feeding new files and pause the running ones (they keep what was acknowledged)."""
        with self._cond:
            self._paused = True
            active = list(self._active.values())
            self._cond.notify_all()
        for task in active:
            task.pause()

    def resume(self) -> None:
        """Resume paused files and feeding the rest."""
        with self._cond:
            self._paused = False
            active = list(self._active.values())
            self._ensure_feeder()
            self._cond.notify_all()
        for task in active:
            if task.state is TaskState.PAUSED:
                task.resume()

    def cancel(self) -> None:
        """Cancel every file not uploaded yet. Final."""
        with self._cond:
            self._stopped = True
            self._cancelled.update(item.name for item in self._waiting)
            self._waiting.clear()
            active = list(self._active.values())
            self._cond.notify_all()
        for task in active:
            task.cancel()

    def retry(self) -> int:
        """Try the failed files again; how many."""
        with self._cond:
            failed = list(self._failed)
            self._failed.clear()
            again: list[Task] = []
            for name in failed:
                task = self._tasks.get(name)
                if task is not None and task.state is TaskState.FAILED:
                    self._active[name] = task
                    again.append(task)
                else:  # failed before a task existed (e.g. the file vanished): submit again
                    self._waiting.append(self._by_name[name])
            self._ensure_feeder()
            self._cond.notify_all()
        for task in again:
            task.retry()
        return len(failed)

    def wait(self, timeout: float | None = None, *, raise_on_error: bool = False) -> BatchSnapshot:
        """Block until the batch settles (done, failed, cancelled or paused); the snapshot.

        With ``raise_on_error`` failures raise :class:`BatchError` listing them.
        ``TimeoutError`` when ``timeout`` passes first.
        """
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                snap = self._snapshot_locked()
                if snap.settled:
                    break
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"batch still {snap.state} after {timeout} s: {snap.describe()}")
                self._cond.wait(0.25 if left is None else min(left, 0.25))
        if raise_on_error and snap.state in ("failed", "cancelled"):
            lines = "\n".join(f"  {f}" for f in snap.failures[:20])
            more = f"\n  ... and {len(snap.failures) - 20} more" if len(snap.failures) > 20 else ""
            raise BatchError(f"batch {snap.state}: {snap.describe()}\n{lines}{more}".rstrip(), snap)
        return snap

    def snapshot(self) -> BatchSnapshot:
        with self._cond:
            return self._snapshot_locked()

    def _snapshot_locked(self) -> BatchSnapshot:
        done_bytes = sum(self._by_name[n].size for n in self._done | self._skipped)
        running = 0  # active tasks not paused (a done or failed one counts until the feeder settles it)
        rate = 0.0
        for task in self._active.values():
            snap = task.snapshot()
            done_bytes += snap.acked
            if snap.state is not TaskState.PAUSED:
                running += 1
            if snap.state in (TaskState.QUEUED, TaskState.CONNECTING, TaskState.UPLOADING):
                rate += snap.rate
        total_bytes = sum(item.size for item in self.items)
        unsettled = running or self._planning or (self._waiting and not self._paused and not self._stopped)
        if self._stopped:
            state = "cancelled" if not unsettled else "running"
        elif unsettled or not self._started_feeding:
            state = "running"
        elif self._paused or any(t.state is TaskState.PAUSED for t in self._active.values()):
            state = "paused"
        elif self._failed:
            state = "failed"
        else:
            state = "done"
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
        )

    # ------------------------------------------------------------------ the feeder
    def _on_event(self, event: Any) -> None:
        if event.kind == "state" and event.snapshot.id in self._ids:
            with self._cond:
                self._cond.notify_all()

    def _run(self, adopt: bool) -> None:
        try:
            if adopt:
                self._adopt()
            with self._cond:
                self._started_feeding = True
            while True:
                with self._cond:
                    self._settle()
                    take: list[BatchItem] = []
                    if not self._paused and not self._stopped:
                        running = sum(1 for t in self._active.values() if t.state is not TaskState.PAUSED)
                        while self._waiting and running + len(take) < self._window:
                            take.append(self._waiting.popleft())
                    self._planning = len(take)
                    if not take:
                        if self._closed or not (self._active or self._waiting):
                            self._feeder_ending = True
                            return
                        self._cond.notify_all()
                        self._cond.wait(0.5)
                        continue
                for plan in self._plan(take):
                    self._start(plan)
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
                self._record(name, task)
                self.engine.forget(task.id)
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
                self.engine.forget(task.id)

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
                tasks = self.engine.resume(entry.id, **again)
            except (KeyError, ValueError, OSError):
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
        self._tasks[name] = task
        self._active[name] = task
        self._ids.add(task.id)

    def _start(self, plan: _Plan) -> None:
        try:
            self._start_one(plan)
        finally:
            with self._cond:
                self._planning -= 1
                self._cond.notify_all()

    def _start_one(self, plan: _Plan) -> None:
        item = plan.item
        if plan.action == "skip":
            with self._cond:
                self._skipped.add(item.name)
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
        try:
            task = self.engine.submit(item.path, self.url, **opts)
        except (OSError, ValueError) as exc:
            with self._cond:
                self._failed[item.name] = BatchFailure(item.name, "source", None, str(exc))
                self._cond.notify_all()
            return
        with self._cond:
            self._take(item.name, task)
            if self._paused:
                task.pause()
            self._cond.notify_all()

    # ------------------------------------------------------------------ skip-unchanged
    def _plan(self, items: list[BatchItem]) -> list[_Plan]:
        plans = [self._plan_local(item) for item in items]
        need = [p for p in plans if p.action == "check"]
        if need:
            with ThreadPoolExecutor(max_workers=min(4, len(need))) as pool:
                list(pool.map(self._plan_remote, need))
        return plans

    def _plan_local(self, item: BatchItem) -> _Plan:
        rec = self._records.get(item.name)
        if rec is None:
            return _Plan(item, "upload")
        same = rec.get("size") == item.size and rec.get("mtime_ns") == item.mtime_ns
        grew = (
            self.protocol == "wcs-append"
            and isinstance(rec.get("size"), int)
            and item.size > rec["size"]
            and rec.get("etag")
        )
        if same:
            return _Plan(item, "check" if self._check_remote else "skip")
        if grew:
            return _Plan(item, "check", int(rec["size"]))
        return _Plan(item, "upload")

    def _plan_remote(self, plan: _Plan) -> None:
        """Turn a ``check`` plan into ``skip``, ``append`` or ``upload`` (in a pool thread)."""
        item = plan.item
        rec = self._records[item.name]
        try:
            if self.protocol == "wcs-append":
                if plan.position:  # grew: the recorded part must be unchanged here and there
                    if _local_etag(item.path, plan.position) != rec["etag"]:
                        plan.action = "upload"
                    elif not self._check_remote or self._wcs_holds(item, rec):
                        plan.action = "append"
                    else:
                        plan.action = "upload"
                    return
                plan.action = "skip" if self._wcs_holds(item, rec) else "upload"
            else:
                plan.action = "skip" if self._uploader_holds(item, rec) else "upload"
        except (httpx.HTTPError, OSError, ValueError):
            plan.action = "upload"

    def _client(self) -> httpx.Client:
        with self._cond:
            if self._http is None:
                self._http = httpx.Client(
                    timeout=30.0, follow_redirects=False, verify=self.engine.config.verify
                )
            return self._http

    def _wcs_holds(self, item: BatchItem, rec: Mapping[str, Any]) -> bool:
        """An empty append at the recorded size answers the object's hash (B3)."""
        if self._wcs_creds is None:
            from .engine.credentials import resolve_wcs_credentials

            cfg = self.engine.config
            self._wcs_creds = resolve_wcs_credentials(
                token=self._submit.get("token"),
                access_key=self._submit.get("access_key"),
                secret_key=self._submit.get("secret_key"),
                scope=self._submit.get("scope"),
                defaults=(cfg.token, cfg.access_key, cfg.secret_key),
                ttl=cfg.token_ttl,
            )
        size = int(rec["size"])
        body = wcs.prepare_append(
            self._wcs_creds.current(), BytesSource(b""), 0, 0, key=self._remote_name(item)
        )
        base = self.url.rstrip("/")
        r = self._client().post(base + wcs.append_path(size), content=body.read_all(), headers=body.headers)
        answer = wcs.process_append_answer(r.status_code, r.headers.multi_items(), r.content)
        return bool(answer.ok and answer.hash and answer.hash == rec.get("etag"))

    def _uploader_holds(self, item: BatchItem, rec: Mapping[str, Any]) -> bool:
        """The reference server's stat route (size and etag of the stored file) when it has
        one; else the session's query must list the whole file as held."""
        client = self._client()
        stored = str(rec.get("stored") or self._remote_name(item))
        origin = str(httpx.URL(self.url).copy_with(path="/", query=None, fragment=None)).rstrip("/")
        r = client.get(origin + "/files/" + quote(stored, safe="/") + "?stat")
        if r.headers.get("x-nbupload-read"):  # the route exists: its answer is the truth
            try:
                info = r.json() if r.status_code == 200 else None
            except ValueError:
                info = None
            if not isinstance(info, dict) or info.get("size") != item.size or not info.get("hash"):
                return False
            return bool(info["hash"] == _local_etag(item.path))
        boundary = rec.get("boundary")
        if not isinstance(boundary, str) or not boundary:
            return False
        headers = dict(self._submit.get("headers") or {})
        qheaders, body = uploader.prepare_query(boundary)
        r = client.post(self.url, content=body, headers={**headers, **qheaders})
        answer = uploader.process_query_answer(r.status_code, r.content, boundary)
        field = str(rec.get("field") or "file")
        return answer.resumable and answer.ranges_for(field) == RangeSet([(0, item.size)])

    def close(self) -> None:
        """Stop the feeder thread and the event subscription (the tasks are not touched)."""
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
        with self._cond:
            http, self._http = self._http, None
        if http is not None:
            http.close()


def upload_many(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    url: str,
    *,
    protocol: str = "uploader",
    prefix: str = "",
    hidden: bool = False,
    skip_unchanged: bool = True,
    check_remote: bool = True,
    window: int | None = None,
    wait: bool = False,
    engine: Engine | None = None,
    **options: Any,
) -> Batch:
    """Upload files, folders (recursive) and globs as one :class:`Batch`.

    ``paths``: one or several paths; names follow :func:`~nbupload.batchpaths.expand_paths`
    (relative paths kept: ``run1/metrics.csv``), with ``prefix`` in front (a folder on the
    uploader server, a key prefix for WCS). ``hidden`` includes dot files found by walking.
    ``skip_unchanged`` skips files uploaded by an earlier run of the same batch and unchanged
    since (size, mtime and, with ``check_remote``, the server's own answer: see the module).
    ``options`` are :func:`nbupload.upload`'s (``protocol``, ``chunk_size``, ``fields``,
    ``headers``, ``token``/``access_key``/``secret_key``/``scope``, ``mime``, ``name``).
    With ``wait=True`` returns once settled and raises :class:`BatchError` on failures.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if prefix and (prefix.startswith("/") or ".." in prefix.split("/")):
        raise ValueError(f"prefix {prefix!r} must be a relative folder without '..'")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    for bad in ("filename", "key", "position", "source"):
        if bad in options:
            raise TypeError(
                f"upload_many() sets {bad} per file; use prefix= for a common folder or key prefix"
            )
    items = expand_paths(list(paths), hidden=hidden)
    if not items:
        raise FileNotFoundError("nothing to upload: the folders given hold no files")
    if engine is None:
        from .api import get_engine

        engine = get_engine()
    submit = {"protocol": protocol, **{k: v for k, v in options.items() if v is not None}}
    if protocol == "wcs-append":
        from .engine.credentials import resolve_wcs_credentials

        cfg = engine.config
        resolve_wcs_credentials(  # fail now, not once per file, when credentials are missing
            token=options.get("token"),
            access_key=options.get("access_key"),
            secret_key=options.get("secret_key"),
            scope=options.get("scope"),
            defaults=(cfg.token, cfg.access_key, cfg.secret_key),
        )
    manifest = None
    if skip_unchanged and engine.config.journal:
        identity = {
            "protocol": protocol,
            "url": str(url).split("?")[0],
            "prefix": prefix,
            "scope": str(options.get("scope") or ""),
            "field": str(options.get("name") or "file"),
        }
        manifest = Manifest(engine.config.tasks_dir / "batches", identity)
    batch = Batch(
        engine,
        items,
        str(url),
        submit,
        prefix=prefix,
        manifest=manifest,
        check_remote=check_remote,
        window=window,
    )
    if wait:
        batch.wait(raise_on_error=True)
    return batch
