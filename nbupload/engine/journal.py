"""The task journal: one JSON file per unfinished task, so uploads survive a restart.

``<dir>/<id>.json`` holds what resuming needs (protocol, URL, source path and identity,
boundary, fields, chunk size, acknowledged ranges or append position) and nothing
secret: credentials come back from options, environment or configuration at resume
time, and header or field values whose names look secret are left out (their names are
recorded so a resume can ask for them). Files are written atomically (temp file, fsync,
rename). ``<dir>/<id>.lock`` is held with ``flock`` by the one process running the task,
so two processes resuming the same task cannot both win.
"""

from __future__ import annotations

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

__all__ = [
    "JOURNAL_VERSION",
    "Journal",
    "JournalEntry",
    "TaskLock",
    "TaskLockedError",
    "is_secret_name",
    "redact_url",
    "split_secrets",
]

JOURNAL_VERSION = 1
_SECRET_NAME = re.compile(r"auth|token|secret|passw|cookie|signature|credential|api[-_]?key|session", re.I)
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def is_secret_name(name: str) -> bool:
    """Whether a header or form field called ``name`` probably carries a credential."""
    return bool(_SECRET_NAME.search(name))


def split_secrets(items: Mapping[str, str] | None) -> tuple[dict[str, str], list[str]]:
    """``(kept, secret_names)``: the values safe to write down, and the names left out."""
    kept: dict[str, str] = {}
    secret: list[str] = []
    for k, v in (items or {}).items():
        (secret.append(k) if is_secret_name(k) else kept.__setitem__(k, v))
    return kept, secret


def redact_url(url: str, mask: str | None = "***") -> tuple[str, list[str]]:
    """The URL with secret-looking query values and any password masked (``mask``) or
    dropped (``mask=None``), and the names of the query parameters concerned."""
    import httpx

    u = httpx.URL(url)
    names: list[str] = []
    kept: list[tuple[str, str]] = []
    for k, v in u.params.multi_items():
        if is_secret_name(k):
            names.append(k)
            if mask is not None:
                kept.append((k, mask))
        else:
            kept.append((k, v))
    if not names and not u.password:
        return url, []
    clean = u.copy_with(params=httpx.QueryParams(kept)) if names else u
    if u.password:
        clean = clean.copy_with(password=mask or "")
        names.append(":password")
    return str(clean).replace("%2A%2A%2A", "***"), names


class TaskLockedError(RuntimeError):
    """Another process is running this task."""


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


class TaskLock:
    """An exclusive ``flock`` on ``<id>.lock``, held while this process owns the task."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path) -> TaskLock:
        import fcntl

        for _ in range(20):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise TaskLockedError(
                        f"task {path.stem} is being uploaded by another process right now"
                    ) from None
                raise
            # The file may have been unlinked by its finishing owner between open and flock.
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return cls(path, fd)
            except FileNotFoundError:
                pass
            os.close(fd)
        raise TaskLockedError(f"task {path.stem}: could not take its lock")

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self, remove: bool = False) -> None:
        if self._fd is None:
            return
        if remove:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
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
        text = json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False)
        fd, tmp = tempfile.mkstemp(prefix=f".{task_id}.", suffix=".tmp", dir=self.dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
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
        try:
            self._json(task_id).unlink()
        except FileNotFoundError:
            pass

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
        import fcntl

        path = self.lock_path(task_id)
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
