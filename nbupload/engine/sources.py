"""Turn what the user hands us into a random-access :class:`~nbupload.protocols.multipart.Source`.

Accepted: a path (read with ``os.pread``, memory independent of the file size), a
bytes-like object, a readable binary file object, or any object with ``.size`` and
``.pread(n, offset)``. Only path-backed sources can be resumed by another process; for
them we record the file's identity (size, mtime_ns, inode) so a resume can tell when the
file changed in between.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

from ..errors import SourceChangedError
from ..protocols.multipart import BytesSource, FileSource, Source

__all__ = ["FileIdentity", "OpenedSource", "SourceChangedError", "open_source", "reopen_path"]


@dataclass(frozen=True)
class FileIdentity:
    """What tells one version of a file from another without reading it."""

    size: int
    mtime_ns: int
    inode: int
    dev: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileIdentity:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)

    def as_dict(self) -> dict[str, int]:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "inode": self.inode, "dev": self.dev}

    def differences(self, other: FileIdentity) -> list[str]:
        out = []
        if self.size != other.size:
            out.append(f"size {self.size} -> {other.size} bytes")
        if self.mtime_ns != other.mtime_ns:
            out.append("modification time changed")
        if self.inode != other.inode or self.dev != other.dev:
            out.append("it was replaced by another file")
        return out


class _LockedSeekSource:
    """A seekable binary file object shared between threads (seek + read under a lock)."""

    def __init__(self, fileobj: Any) -> None:
        self._f = fileobj
        self._lock = threading.Lock()
        with self._lock:
            here = fileobj.tell()
            self.size = fileobj.seek(0, io.SEEK_END)
            fileobj.seek(here)

    def pread(self, size: int, offset: int) -> bytes:
        with self._lock:
            self._f.seek(offset)
            return bytes(self._f.read(size))


@dataclass
class OpenedSource:
    """A source ready for the engine. ``close()`` releases what we opened (not the caller's)."""

    source: Source
    size: int
    filename: str
    path: str | None = None
    identity: FileIdentity | None = None
    _fd: int | None = None
    _tmp: str | None = None

    @property
    def persistent(self) -> bool:
        """Whether another process can resume from this source (a path on disk)."""
        return self.path is not None and self._tmp is None

    def check_unchanged(self) -> None:
        """Raise :class:`SourceChangedError` when the path no longer holds the same file."""
        if self.path is None or self.identity is None:
            return
        try:
            now = FileIdentity.of(os.stat(self.path))
        except OSError as exc:
            raise SourceChangedError(f"{self.path}: cannot read it any more ({exc.strerror})") from None
        diff = self.identity.differences(now)
        if diff:
            raise SourceChangedError(f"{self.path} changed since the upload started: {', '.join(diff)}")

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None


def _open_path(path: str | os.PathLike[str]) -> OpenedSource:
    p = os.path.abspath(os.fspath(path))
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {p}") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{p} is a directory, not a file") from None
    except PermissionError:
        raise PermissionError(f"cannot read {p}: permission denied") from None
    st = os.fstat(fd)
    import stat

    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ValueError(f"{p} is not a regular file")
    return OpenedSource(
        FileSource(fd, st.st_size), st.st_size, os.path.basename(p), p, FileIdentity.of(st), _fd=fd
    )


def reopen_path(path: str, expected: FileIdentity | None) -> OpenedSource:
    """Open ``path`` again for a resumed task and check it is still the same file."""
    try:
        opened = _open_path(path)
    except OSError as exc:
        raise SourceChangedError(f"{path}: cannot open it any more ({exc})") from None
    if expected is not None and opened.identity is not None:
        diff = expected.differences(opened.identity)
        if diff:
            opened.close()
            raise SourceChangedError(
                f"{path} changed since the upload started: {', '.join(diff)}. "
                "The bytes already on the server belong to the old version; start a new upload."
            )
    return opened


def _file_object(obj: Any) -> OpenedSource:
    name = getattr(obj, "name", None)
    filename = os.path.basename(name) if isinstance(name, str) and name else "file"
    try:
        fd = obj.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = None
    if fd is not None:
        import stat

        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            # A real file: read it by its own descriptor (dup'ed, so closing ours is safe).
            own = os.dup(fd)
            opened = OpenedSource(FileSource(own, st.st_size), st.st_size, filename, _fd=own)
            if isinstance(name, str) and os.path.exists(name):
                try:
                    if FileIdentity.of(os.stat(name)) == FileIdentity.of(st):
                        opened.path = os.path.abspath(name)
                        opened.identity = FileIdentity.of(st)
                except OSError:
                    pass
            return opened
    seekable = getattr(obj, "seekable", None)
    if callable(seekable) and seekable():
        src = _LockedSeekSource(obj)
        return OpenedSource(src, src.size, filename)
    # A pipe or socket: spill to a temporary file so chunks can be re-read on retry.
    fd_tmp, tmp = tempfile.mkstemp(prefix="nbupload-spool-")
    with os.fdopen(fd_tmp, "wb") as out:
        shutil.copyfileobj(obj, out, 1 << 20)
    opened = _open_path(tmp)
    opened.filename = filename
    opened.path = None
    opened.identity = None
    opened._tmp = tmp
    return opened


def open_source(source: Any) -> OpenedSource:
    """Wrap ``source`` (see the module docstring); raise ``TypeError``/``OSError`` with clear text."""
    if isinstance(source, (str, os.PathLike)):
        return _open_path(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        src = BytesSource(source)
        return OpenedSource(src, src.size, "data")
    if hasattr(source, "pread") and hasattr(source, "size"):
        size = int(source.size)
        if size < 0:
            raise ValueError("source.size must not be negative")
        return OpenedSource(source, size, getattr(source, "filename", None) or "data")
    if hasattr(source, "read"):
        return _file_object(source)
    raise TypeError(
        f"cannot upload a {type(source).__name__}: pass a file path, bytes, a binary file object "
        "or an object with .size and .pread(n, offset)"
    )
