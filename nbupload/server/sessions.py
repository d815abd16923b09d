"""Uploader sessions on disk: what each session holds, surviving server restarts.

Layout under ``ROOT/.partial/``::

    <sid>/lock              the session's cross-process lock file (see :mod:`.locks`)
    <sid>/session.json      boundary, data fields (last value), per file field:
                            filename, total, held ranges, complete, stored name
    <sid>/<fid>.part        the field's bytes, each chunk written at its offset (sparse)
    plain-<random>.tmp      a plain (non-resumable) upload being received
    whole-<random>.tmp      a chunk holding a whole file of a new session, being received
    new-<random>/           a new session's directory being staged (see :meth:`SessionStore.stage`)

``sid`` is a hash of the boundary (a boundary may hold ``/``), ``fid`` a hash of the field
name. ``session.json`` is written atomically (temp file + rename) after a chunk's bytes are
written, so the held ranges it lists are always on disk; it is re-read and rewritten only
under the session's lock, so processes sharing the root agree on it and exactly one of them
renames a complete file into ``ROOT/<name>``; a partial one is never visible there.

One exception to "only under the lock": a session that does not exist yet can be created
whole without it (:meth:`SessionStore.stage`, then :meth:`SessionStore.publish`): its
directory is written privately, then renamed to the session's name, which fails when that
name exists. Nobody can have read or locked a session that did not exist, so nothing is
undercut; the lock file is then made by the first request that needs the lock.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocols.ranges import RangeSet
from .locks import LockTable, try_lock_file

__all__ = ["PARTIAL_DIR", "FileEntry", "Session", "SessionStore"]

PARTIAL_DIR = ".partial"
_META = "session.json"
_LOCK = "lock"


def _digest(text: str, n: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


@dataclass
class FileEntry:
    """One file field of a session."""

    name: str
    filename: str
    total: int
    held: RangeSet = field(default_factory=RangeSet)
    complete: bool = False
    stored: str | None = None

    @property
    def fid(self) -> str:
        return _digest(self.name, 24)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "filename": self.filename,
            "total": self.total,
            "held": str(self.held),
            "complete": self.complete,
            "stored": self.stored,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FileEntry:
        return cls(
            name=str(obj["name"]),
            filename=str(obj["filename"]),
            total=int(obj["total"]),
            held=RangeSet.parse(obj.get("held")),
            complete=bool(obj.get("complete")),
            stored=obj.get("stored"),
        )


@dataclass
class Session:
    """An upload session, named by its multipart boundary."""

    boundary: str
    directory: Path
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    data: dict[str, str] = field(default_factory=dict)
    files: dict[str, FileEntry] = field(default_factory=dict)

    def part_path(self, entry: FileEntry) -> Path:
        return self.directory / f"{entry.fid}.part"

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "boundary": self.boundary,
            "created": self.created,
            "updated": self.updated,
            "data": self.data,
            "files": [entry.to_json() for entry in self.files.values()],
        }


class SessionStore:
    """Sessions by boundary, on disk under ``ROOT/.partial``: the disk is the only truth.

    Several processes may serve one root, so nothing is cached: a request reads the session
    from disk, and changes it only inside :meth:`transaction` (the session's cross-process
    lock, the state re-read inside it).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.partial = root / PARTIAL_DIR
        self.locks = LockTable()

    def ensure_partial_dir(self) -> Path:
        """Create ``ROOT/.partial`` (``OSError`` if impossible, e.g. a file is in the way)."""
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.partial, 0o700)
        if self.partial.is_symlink() or not self.partial.is_dir():
            raise NotADirectoryError(f"{self.partial} is not a directory")
        return self.partial

    def _dir(self, boundary: str) -> Path:
        return self.partial / _digest(boundary, 32)

    def session_dir(self, boundary: str) -> Path:
        """Where session ``boundary`` lives (whether or not it exists)."""
        return self._dir(boundary)

    def exists(self, boundary: str) -> bool:
        """Whether anything of the session is on disk (its directory, or whatever is in the way)."""
        return os.path.lexists(self._dir(boundary))

    def get(self, boundary: str) -> Session | None:
        """The session as last committed on disk; ``None`` when unknown (or unreadable)."""
        directory = self._dir(boundary)
        if directory.is_symlink():  # planted: never read or write through it
            return None
        try:
            obj = json.loads((directory / _META).read_text("utf-8"))
            if obj.get("boundary") != boundary:
                return None
            session = Session(
                boundary=boundary,
                directory=directory,
                created=float(obj.get("created", time.time())),
                updated=float(obj.get("updated", time.time())),
                data={str(k): str(v) for k, v in (obj.get("data") or {}).items()},
            )
            for item in obj.get("files") or []:
                entry = FileEntry.from_json(item)
                session.files[entry.name] = entry
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return session

    def _make_dir(self, boundary: str) -> Path:
        self.ensure_partial_dir()
        directory = self._dir(boundary)
        os.makedirs(directory, 0o700, exist_ok=True)
        if directory.is_symlink() or not directory.is_dir():
            raise NotADirectoryError(f"{directory} is a symlink or not a directory")
        return directory

    @contextlib.asynccontextmanager
    async def transaction(self, boundary: str) -> AsyncIterator[Session]:
        """The session (a new one if unknown) re-read under its cross-process lock; the caller
        changes it and calls :meth:`save` before leaving. ``OSError`` when its directory
        cannot be made (4006)."""
        async with contextlib.AsyncExitStack() as stack:
            for attempt in range(3):
                directory = self._make_dir(boundary)
                try:
                    await stack.enter_async_context(self.locks.hold(directory / _LOCK))
                    break
                except FileNotFoundError:
                    # the directory was swept between its creation and the lock: make it again
                    if attempt == 2:
                        raise
            yield self.get(boundary) or Session(boundary=boundary, directory=directory)

    def stage(self, session: Session) -> Path:
        """A private directory holding ``session.json`` of ``session`` (a new session), to be
        :meth:`publish`-ed or :meth:`discard`-ed. ``OSError`` when it cannot be written."""
        staging = self.ensure_partial_dir() / f"new-{secrets.token_hex(12)}"
        os.mkdir(staging, 0o700)
        try:
            self._write_meta(staging / _META, session)
        except BaseException:
            self.discard(staging)
            raise
        return staging

    def publish(self, staging: Path, boundary: str) -> bool:
        """Rename ``staging`` to the directory of session ``boundary``; ``False`` (and
        ``staging`` left for :meth:`discard`) when that session exists meanwhile: then it goes
        the usual way, under its lock. (A bare empty directory is replaced: a request that has
        just made it has not yet opened its lock file, and finds this session's when it does.)"""
        try:
            os.rename(staging, self._dir(boundary))
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                return False
            raise
        return True

    @staticmethod
    def discard(staging: Path) -> None:
        """Remove a staged directory that was not published (what the sweeper would do later)."""
        shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def _write_meta(path: Path, session: Session) -> None:
        session.updated = time.time()
        data = json.dumps(session.to_json(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def save(self, session: Session) -> None:
        """Write ``session.json`` atomically (temp + rename); call it inside :meth:`transaction`."""
        tmp = session.directory / f".{_META}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        self._write_meta(tmp, session)
        os.replace(tmp, session.directory / _META)

    def sweep(self, ttl: float, now: float | None = None) -> int:
        """Remove sessions untouched for ``ttl`` seconds (and stale plain temp files).

        A session is removed only while its lock is free (taken without waiting), so a request
        of any process in the middle of changing it is never undercut.
        """
        now = time.time() if now is None else now
        removed = 0
        try:
            entries = list(os.scandir(self.partial))
        except OSError:
            return 0
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    lock = Path(entry.path) / _LOCK
                    if self.locks.held_here(lock) or not self._stale(Path(entry.path), ttl, now):
                        continue
                    with try_lock_file(lock) as locked:
                        if locked and self._stale(Path(entry.path), ttl, now):
                            shutil.rmtree(entry.path, ignore_errors=True)
                            removed += 1
                elif now - entry.stat(follow_symlinks=False).st_mtime > ttl:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                continue
        return removed

    @staticmethod
    def _stale(directory: Path, ttl: float, now: float) -> bool:
        meta = directory / _META
        try:
            stamp = meta.stat().st_mtime
        except FileNotFoundError:
            stamp = directory.stat().st_mtime
        return now - stamp > ttl
