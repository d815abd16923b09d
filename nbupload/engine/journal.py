"""The task journal: one JSON file per unfinished task, so uploads survive a restart.

``<dir>/<id>.json`` holds what resuming needs (protocol, URL, source path and identity,
boundary, fields, chunk size, acknowledged ranges or append position; for a multi-file
session, ``files``: each field's name, file name, size, path, identity and its own
acknowledged ranges; the state it was last in and its last error, so a later process can
say why it stopped) and nothing
secret: credentials come back from options, environment or configuration at resume
time, and header or field values whose names look secret are left out (their names are
recorded so a resume can ask for them). Files are written atomically (temp file, fsync,
rename). ``<dir>/<id>.lock`` is held with ``flock`` by the one process running the task,
so two processes resuming the same task cannot both win.

Batches (:mod:`nbupload.batch`) are recorded beside the tasks, in ``<dir>/batches/``: one
``<id>.batch.json`` per batch (:class:`BatchRecord`: its files, URL and options, written once)
and ``<id>.done`` (:class:`DoneLog`: the names finished so far, synced a group at a time);
``<id>.lock`` is held with ``flock`` by the process running the batch (its liveness).
Each file of a batch is also an ordinary task entry while it uploads.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TaskLockedError
from ..protocols.ranges import RangeSet
from .driverstate import DriverState, join_extra, split_extra
from .multifile import FieldLayout
from .redact import is_secret_name, redact_url, split_secrets
from .sources import FileIdentity
from .spec import SessionFile, TaskSpec

__all__ = [
    "BATCH_VERSION",
    "JOURNAL_VERSION",
    "BatchJournal",
    "BatchRecord",
    "DoneLog",
    "Journal",
    "JournalEntry",
    "JournalRecord",
    "TaskLock",
    "TaskLockedError",
    "dumps_text",
    "is_secret_name",
    "redact_url",
    "split_secrets",
]

JOURNAL_VERSION = 1
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def dumps_text(obj: Any, **kwargs: Any) -> str:
    """JSON for a UTF-8 file: readable non-ASCII, and lossless for paths that are not text.

    ``os.fsdecode`` keeps a file name's undecodable bytes (a Latin-1 name on a UTF-8
    system) as lone surrogates, which UTF-8 cannot encode. Such a document is written with
    ``\\udcXX`` escapes instead: still valid JSON, read back to the same string, and the
    path reopens the same file on resume.
    """
    text = json.dumps(obj, ensure_ascii=False, **kwargs)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, **kwargs)
    return text


@dataclass
class JournalEntry:
    """One unfinished task as written down. ``data`` is the raw JSON object."""

    id: str
    data: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return str(self.data.get("name", ""))

    @property
    def url(self) -> str:
        return str(self.data.get("url", ""))

    @property
    def protocol(self) -> str:
        return str(self.data.get("protocol", ""))

    @property
    def total(self) -> int:
        return int(self.data.get("total", 0))

    @property
    def acked(self) -> int:
        return int(self.data.get("acked", 0))


_SCALAR = (str, int, float, bool, type(None))


@dataclass
class JournalRecord:
    """One task as the journal keeps it: the one owner of the file's schema.

    Built from a running task by :meth:`of` (secret-looking values left out, their names
    recorded in ``secret_names``), written with :meth:`to_json`, read back with
    :meth:`from_json` by a later process. ``driver`` is the driver state carried across runs
    (:class:`~nbupload.engine.driverstate.DriverState`: uploader ``mode``/``plain_reason``, WCS
    ``position``/``append_size``) and ``labels`` the front end's notes; the file keeps both in
    its ``"extra"`` object, as it always did (:func:`~nbupload.engine.driverstate.join_extra`).
    """

    id: str
    name: str
    protocol: str
    url: str
    filename: str
    total: int
    boundary: str
    chunk_size: int
    field_name: str = "file"
    fields: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    secret_names: dict[str, list[str]] = field(default_factory=dict)
    key: str | None = None
    mime: str | None = None
    wcs: dict[str, Any] | None = None
    ranges: RangeSet = field(default_factory=RangeSet)
    path: str | None = None
    identity: FileIdentity | None = None
    driver: DriverState = field(default_factory=DriverState)
    #: the front end's notes (``submit(labels=...)``): short strings, never secrets
    labels: dict[str, str] = field(default_factory=dict)
    updated_at: float | None = None
    #: the state the task was in when written ("uploading" if its process died running it)
    state: str | None = None
    #: its last error (``code``, ``text``: the message as the user reads it, never a secret)
    error: dict[str, Any] | None = None
    #: a multi-file session's fields (``ranges`` then spans them end to end)
    files: tuple[SessionFile, ...] = ()
    #: the task's own rate cap (bytes/s): a resumed upload on a shared link keeps it
    limit_rate: float | None = None

    @classmethod
    def of(
        cls,
        task_id: str,
        spec: TaskSpec,
        *,
        total: int,
        ranges: RangeSet,
        path: str | None,
        identity: FileIdentity | None,
        driver: DriverState,
        labels: Mapping[str, str] | None = None,
        state: str | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> JournalRecord:
        """The secret-free record of a task."""
        fields_kept, fields_secret = split_secrets(spec.fields)
        headers_kept, headers_secret = split_secrets(spec.headers)
        url, url_secret = redact_url(spec.url, mask=None)
        creds = spec.credentials
        return cls(
            id=task_id,
            name=spec.filename,
            protocol=spec.protocol,
            url=url,
            filename=spec.filename,
            total=total,
            boundary=spec.boundary,
            chunk_size=spec.chunk_size,
            field_name=spec.field_name,
            fields=fields_kept,
            headers=headers_kept,
            secret_names={"fields": fields_secret, "headers": headers_secret, "url": url_secret},
            key=spec.key,
            mime=spec.mime,
            wcs={"scope": creds.scope, "access_key": creds.access_key} if creds is not None else None,
            ranges=ranges,
            path=path,
            identity=identity,
            driver=driver,
            labels={str(k): str(v) for k, v in (labels or {}).items()},
            state=state,
            error={k: v for k, v in error.items() if isinstance(v, _SCALAR)} if error else None,
            files=spec.files,
            limit_rate=spec.limit_rate,
        )

    @property
    def acked(self) -> int:
        return self.ranges.covered()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "protocol": self.protocol,
            "url": self.url,
            "filename": self.filename,
            "field_name": self.field_name,
            "fields": self.fields,
            "headers": self.headers,
            "secret_names": self.secret_names,
            "key": self.key,
            "mime": self.mime,
            "chunk_size": self.chunk_size,
            "boundary": self.boundary,
            "total": self.total,
            "acked": self.acked,
            "ranges": str(self.ranges),
            "source": {"path": self.path, **(self.identity.as_dict() if self.identity else {})},
            "extra": join_extra(self.driver, self.labels),
        }
        if self.wcs is not None:
            data["wcs"] = self.wcs
        if self.state is not None:
            data["state"] = self.state
        if self.error is not None:
            data["error"] = self.error
        if self.limit_rate is not None:
            data["limit_rate"] = self.limit_rate
        if self.files:
            layout = FieldLayout.of(self.files)
            data["files"] = [
                {
                    "name": f.name,
                    "filename": f.filename,
                    "size": f.size,
                    "mime": f.mime,
                    "ranges": str(layout.of_field(i, self.ranges)),
                    "source": {"path": f.path, **(f.identity.as_dict() if f.identity else {})},
                }
                for i, f in enumerate(self.files)
            ]
        return data

    @staticmethod
    def _files_from_json(items: Any) -> tuple[tuple[SessionFile, ...], RangeSet]:
        """A session's fields and, from each field's own ranges, the task's ranges."""
        files: list[SessionFile] = []
        own: list[RangeSet] = []
        for item in items or []:
            src = item.get("source") or {}
            identity = None
            if {"size", "mtime_ns", "inode", "dev"} <= set(src):
                identity = FileIdentity(
                    int(src["size"]), int(src["mtime_ns"]), int(src["inode"]), int(src["dev"])
                )
            files.append(
                SessionFile(
                    name=str(item["name"]),
                    filename=str(item.get("filename") or item["name"]),
                    size=int(item["size"]),
                    path=src.get("path"),
                    identity=identity,
                    mime=item.get("mime"),
                )
            )
            try:
                own.append(RangeSet.parse(item.get("ranges") or ""))
            except ValueError:
                own.append(RangeSet())
        layout = FieldLayout.of(files)
        ranges = RangeSet()
        for i, r in enumerate(own):
            ranges = ranges | layout.to_task(i, r)
        return tuple(files), ranges

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> JournalRecord:
        """Parse an entry; raises ``ValueError`` (or ``KeyError``/``TypeError``) when it is not one."""
        src = d.get("source") or {}
        identity = None
        if {"size", "mtime_ns", "inode", "dev"} <= set(src):
            identity = FileIdentity(
                int(src["size"]), int(src["mtime_ns"]), int(src["inode"]), int(src["dev"])
            )
        try:
            ranges = RangeSet.parse(d.get("ranges") or "")
        except ValueError:
            ranges = RangeSet()
        names = d.get("secret_names") or {}
        driver, labels = split_extra(d.get("extra"))
        files: tuple[SessionFile, ...] = ()
        if d.get("files"):
            files, ranges = cls._files_from_json(d["files"])
        return cls(
            id=str(d["id"]),
            name=str(d.get("name", "")),
            protocol=str(d["protocol"]),
            url=str(d["url"]),
            filename=str(d.get("filename") or d.get("name") or ""),
            total=int(d.get("total", 0)),
            boundary=str(d["boundary"]),
            chunk_size=int(d.get("chunk_size") or 0),
            field_name=str(d.get("field_name") or "file"),
            fields={str(k): str(v) for k, v in (d.get("fields") or {}).items()},
            headers={str(k): str(v) for k, v in (d.get("headers") or {}).items()},
            secret_names={str(k): [str(n) for n in v] for k, v in names.items()},
            key=d.get("key"),
            mime=d.get("mime"),
            wcs=d.get("wcs"),
            ranges=ranges,
            path=src.get("path"),
            identity=identity,
            driver=driver,
            labels=labels,
            updated_at=d.get("updated_at"),
            state=str(d["state"]) if d.get("state") else None,
            error=dict(d["error"]) if isinstance(d.get("error"), dict) else None,
            files=files,
            limit_rate=float(d["limit_rate"]) if d.get("limit_rate") else None,
        )


class TaskLock:
    """An exclusive ``flock`` on ``<id>.lock``, held while this process owns the task."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path, what: str = "task") -> TaskLock:
        """Take the lock (``what`` names the holder in the error: ``task``, ``batch``);
        :class:`TaskLockedError` when another process (or another lock of this one) has it."""
        import fcntl

        for _ in range(20):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise TaskLockedError(
                        f"{what} {path.stem} is being uploaded by another process right now"
                    ) from None
                raise
            # The file may have been unlinked by its finishing owner between open and flock.
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return cls(path, fd)
            except FileNotFoundError:
                pass
            os.close(fd)
        raise TaskLockedError(f"{what} {path.stem}: could not take its lock")

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self, remove: bool = False) -> None:
        if self._fd is None:
            return
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = None


class Journal:
    """The directory of task files."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)

    def _json(self, task_id: str) -> Path:
        if not _ID.match(task_id):
            raise ValueError(f"invalid task id {task_id!r}")
        return self.dir / f"{task_id}.json"

    def lock_path(self, task_id: str) -> Path:
        return self._json(task_id).with_suffix(".lock")

    def ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def write(self, task_id: str, data: Mapping[str, Any], *, durable: bool = True) -> None:
        """Atomically replace the task's file (temp file, fsync, rename, fsync dir).

        ``durable=False`` skips both fsyncs, for progress: the rename stays atomic and a
        killed process loses nothing (the page cache outlives it); after a power loss the
        entry may be a little behind, which costs only bytes sent again, since a resume asks
        the server what it holds. Two fsyncs per chunk halved chunked throughput.
        """
        self.ensure()
        target = self._json(task_id)
        body = dict(data)
        body["version"] = JOURNAL_VERSION
        body["updated_at"] = time.time()
        text = dumps_text(body, indent=1, sort_keys=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{task_id}.", suffix=".tmp", dir=self.dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if not durable:
            return
        try:
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass

    def read(self, task_id: str) -> JournalEntry | None:
        try:
            text = self._json(task_id).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("id") != task_id:
            return None
        return JournalEntry(task_id, data)

    def remove(self, task_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._json(task_id).unlink()

    def entries(self) -> Iterator[JournalEntry]:
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("*.json"), key=lambda p: p.stat().st_mtime if p.exists() else 0):
            entry = self.read(path.stem) if _ID.match(path.stem) else None
            if entry is not None:
                yield entry

    def lock(self, task_id: str) -> TaskLock:
        self.ensure()
        return TaskLock.acquire(self.lock_path(task_id))

    def is_locked(self, task_id: str) -> bool:
        """Whether some process (this one included) holds the task's lock."""
        return _is_locked(self.lock_path(task_id))


def _is_locked(path: Path) -> bool:
    """Whether some process holds the ``flock`` on ``path`` (a process that died let it go:
    the kernel drops a dead process's locks, so a SIGKILL never leaves one held)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


# ---------------------------------------------------------------------------------- batches
BATCH_VERSION = 1


@dataclass
class BatchRecord:
    """One batch as the journal keeps it (``<dir>/batches/<id>.batch.json``), so that a later
    process resumes it as one (:func:`nbupload.batch.resume_batch`).

    ``items`` are ``(path, name)`` pairs: the absolute local path and the relative name the
    file is stored under (``prefix`` in front); ``sizes`` (same order) what each file held
    when the batch started, so that listing a batch (``nbupload ls``) needs no ``stat`` per
    file (``None`` in a record written before sizes were kept). ``options`` are the upload options without
    any secret (tokens, secret keys and secret-looking header or field values are never
    written; ``secret_names`` lists the header and field names left out, so a resume can ask
    for them). Which files are done is kept beside it, in ``<id>.done`` (:class:`DoneLog`).
    """

    id: str
    url: str
    protocol: str
    items: list[tuple[str, str]]
    prefix: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    secret_names: dict[str, list[str]] = field(default_factory=dict)
    created_at: float = 0.0
    sizes: list[int] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": BATCH_VERSION,
            "kind": "batch",
            "id": self.id,
            "url": redact_url(self.url, mask=None)[0],
            "protocol": self.protocol,
            "prefix": self.prefix,
            "options": {k: v for k, v in self.options.items() if isinstance(v, (*_SCALAR, dict))},
            "secret_names": self.secret_names,
            "created_at": self.created_at or time.time(),
            "items": [[p, n] for p, n in self.items],
        }
        if self.sizes is not None and len(self.sizes) == len(self.items):
            out["sizes"] = list(self.sizes)
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BatchRecord:
        if d.get("kind") != "batch" or not isinstance(d.get("items"), list):
            raise ValueError("not a batch record")
        items = [(str(p), str(n)) for p, n in d["items"]]
        sizes = d.get("sizes")
        if not isinstance(sizes, list) or len(sizes) != len(items):
            sizes = None
        return cls(
            id=str(d["id"]),
            url=str(d["url"]),
            protocol=str(d.get("protocol", "uploader")),
            items=items,
            prefix=str(d.get("prefix", "")),
            options=dict(d.get("options") or {}),
            secret_names={str(k): list(v) for k, v in (d.get("secret_names") or {}).items()},
            created_at=float(d.get("created_at") or 0.0),
            sizes=[int(n) for n in sizes] if sizes is not None else None,
        )


class DoneLog:
    """The names of a batch's finished files, one per line, appended as they finish.

    Synced to disk a group at a time (every ``group`` names or ``interval`` seconds, and on
    :meth:`close`), not once per file: one fsync per file capped a batch of small files at the
    disk's sync rate. A name lost with the last unsynced group (a power loss, not a killed
    process: the page cache outlives it) only makes a resume check that file again (its
    manifest entry and the server's answer skip it, or it is sent again whole); no byte is
    lost and nothing is stored twice under another name.
    """

    def __init__(self, path: Path, *, group: int = 256, interval: float = 1.0) -> None:
        self.path = path
        self.group = group
        self.interval = interval
        self._f: Any = None
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def read(self) -> set[str]:
        try:
            with open(self.path, encoding="utf-8") as f:
                # a torn last line (no newline) is left out: that file is checked again
                return {line[:-1] for line in f if line.endswith("\n") and len(line) > 1}
        except FileNotFoundError:
            return set()

    def add(self, names: list[str], *, sync: bool = True) -> None:
        """Append ``names`` (written through to the OS at once, so a killed process keeps
        them); fsync when a group is due, unless ``sync=False`` (then call :meth:`sync_due`)."""
        if not names:
            return
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open across calls
        self._f.write("".join(n + "\n" for n in names if "\n" not in n))
        self._f.flush()
        self._unsynced += len(names)
        if sync:
            self.sync_due()

    def sync_due(self) -> None:
        """fsync if a group is due (``group`` names or ``interval`` seconds since the last)."""
        if self._unsynced >= self.group or (
            self._unsynced and time.monotonic() - self._last_sync >= self.interval
        ):
            self.sync()

    def sync(self) -> None:
        if self._f is not None and self._unsynced:
            os.fsync(self._f.fileno())
            self._unsynced = 0
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                self.sync()
            self._f.close()
            self._f = None


class BatchJournal:
    """The batch records under ``<journal dir>/batches/`` (the task journal's own directory)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory) / "batches"

    def _path(self, batch_id: str, suffix: str) -> Path:
        if not _ID.match(batch_id):
            raise ValueError(f"invalid batch id {batch_id!r}")
        return self.dir / f"{batch_id}{suffix}"

    def write(self, record: BatchRecord) -> None:
        """Atomically and durably (temp file, fsync, rename): written once per batch."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = self._path(record.id, ".batch.json")
        fd, tmp = tempfile.mkstemp(prefix=f".{record.id}.", suffix=".tmp", dir=self.dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record.to_json(), f, ensure_ascii=False, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def read(self, batch_id: str) -> BatchRecord | None:
        try:
            with open(self._path(batch_id, ".batch.json"), encoding="utf-8") as f:
                return BatchRecord.from_json(json.load(f))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def records(self) -> list[BatchRecord]:
        if not self.dir.is_dir():
            return []
        out = []
        for path in sorted(self.dir.glob("*.batch.json")):
            rec = self.read(path.name[: -len(".batch.json")])
            if rec is not None:
                out.append(rec)
        return out

    def done_log(self, batch_id: str) -> DoneLog:
        return DoneLog(self._path(batch_id, ".done"))

    def lock(self, batch_id: str) -> TaskLock:
        """The batch's liveness: ``<id>.lock``, held (``flock``) by the one process running the
        batch, as a task entry's lock is. A batch's one-chunk files have no task entry of their
        own, so this lock is what tells ``nbupload ls`` in another process that the batch is
        running; the kernel drops it when that process dies, even by SIGKILL."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return TaskLock.acquire(self._path(batch_id, ".lock"), what="batch")

    def is_locked(self, batch_id: str) -> bool:
        """Whether some process (this one included) runs the batch (holds its lock)."""
        return _is_locked(self._path(batch_id, ".lock"))

    def remove(self, batch_id: str) -> None:
        for suffix in (".batch.json", ".done"):
            with contextlib.suppress(FileNotFoundError):
                self._path(batch_id, suffix).unlink()
