"""Uploader sessions on disk: what each session holds, surviving server restarts.

Layout under ``ROOT/.partial/``::

    <sid>/session.json      boundary, data fields (last value), per file field:
                            filename, total, held ranges, complete, stored name
    <sid>/<fid>.part        the field's bytes, each chunk written at its offset (sparse)
    plain-<random>.tmp      a plain (non-resumable) upload being received

``sid`` is a hash of the boundary (a boundary may hold ``/``), ``fid`` a hash of the field
name. ``session.json`` is written atomically (temp file + rename) after a chunk's bytes are
written, so the held ranges it lists are always on disk. A complete file is renamed into
``ROOT/<name>``; a partial one is never visible there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocols.ranges import RangeSet

__all__ = ["FileEntry", "PARTIAL_DIR", "Session", "SessionStore"]

PARTIAL_DIR = ".partial"
_META = "session.json"


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
    writers: int = 0  # chunks being written now (memory only)

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

    @property
    def busy(self) -> bool:
        return any(entry.writers for entry in self.files.values())

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
    """Sessions by boundary: cached in memory, loaded from and saved to ``ROOT/.partial``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.partial = root / PARTIAL_DIR
        self._cache: dict[str, Session] = {}

    def ensure_partial_dir(self) -> Path:
        """Create ``ROOT/.partial`` (``OSError`` if impossible, e.g. a file is in the way)."""
        try:
            os.mkdir(self.partial, 0o700)
        except FileExistsError:
            pass
        if self.partial.is_symlink() or not self.partial.is_dir():
            raise NotADirectoryError(f"{self.partial} is not a directory")
        return self.partial

    def _dir(self, boundary: str) -> Path:
        return self.partial / _digest(boundary, 32)

    def get(self, boundary: str) -> Session | None:
        """The session, from memory or disk; ``None`` when unknown (or unreadable)."""
        session = self._cache.get(boundary)
        if session is not None:
            return session
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
        self._cache[boundary] = session
        return session

    def create(self, boundary: str) -> Session:
        """A new session with its directory (``OSError`` when it cannot be made: 4006)."""
        self.ensure_partial_dir()
        directory = self._dir(boundary)
        os.makedirs(directory, 0o700, exist_ok=True)
        if directory.is_symlink() or not directory.is_dir():
            raise NotADirectoryError(f"{directory} is a symlink or not a directory")
        session = Session(boundary=boundary, directory=directory)
        self._cache[boundary] = session
        return session

    def save(self, session: Session) -> None:
        """Write ``session.json`` atomically (temp + rename)."""
        session.updated = time.time()
        data = json.dumps(session.to_json(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        tmp = session.directory / f".{_META}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, session.directory / _META)

    def sweep(self, ttl: float, now: float | None = None) -> int:
        """Remove sessions untouched for ``ttl`` seconds (and stale plain temp files)."""
        now = time.time() if now is None else now
        removed = 0
        active = {s.directory.name for s in self._cache.values() if s.busy}
        try:
            entries = list(os.scandir(self.partial))
        except OSError:
            return 0
        for entry in entries:
            if entry.name in active:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    meta = Path(entry.path) / _META
                    stamp = meta.stat().st_mtime if meta.exists() else entry.stat(follow_symlinks=False).st_mtime
                    if now - stamp > ttl:
                        shutil.rmtree(entry.path, ignore_errors=True)
                        removed += 1
                elif now - entry.stat(follow_symlinks=False).st_mtime > ttl:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                continue
        for boundary, session in list(self._cache.items()):
            if not session.directory.exists():
                del self._cache[boundary]
        return removed
