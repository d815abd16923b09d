"""Exclusive locks shared by every server process on one root: lock files under the root.

Several ``nbupload serve`` processes (``--workers``, instances behind a load balancer, hosts
sharing a filesystem) may serve one root. What a session holds, whether a file is complete,
who moves it into place and where a WCS object ends are decided under a lock on a small lock
file beside the state, with the state re-read from disk inside the lock.

The lock is a POSIX record lock (``fcntl.lockf``), which works across processes on one
machine and across hosts on a filesystem with working POSIX locks (NFSv4, or NFSv3 with
lockd; not every FUSE or SMB mount). POSIX locks belong to the *process*: two coroutines of
one process would not exclude each other, and closing any descriptor of the file would drop
the lock, so an in-process :class:`asyncio.Lock` per path comes first and the file is opened
only by its holder. The kernel releases the lock when its process dies (a SIGKILL leaves
nothing stale). Waiting polls with a non-blocking attempt and a short sleep, so a waiter
holds no thread and is cancelled like any coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

__all__ = ["LockTable", "try_lock_file"]

_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_POLL_FIRST = 0.0005
_POLL_MAX = 0.02


def _open_locked(path: Path, *, block: bool) -> int | None:
    """An fd of ``path`` holding its lock (non-blocking attempt); ``None`` if held elsewhere.

    The file may be unlinked (by the sweeper) between the open and the lock: then the lock is
    on an orphan inode nobody else will see, so it is dropped and the path opened again.
    """
    while True:
        fd = os.open(path, _FLAGS, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except OSError:
            os.close(fd)
            return None
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def try_lock_file(path: Path) -> Iterator[bool]:
    """Hold ``path``'s lock if nobody holds it (yields ``True``), else yield ``False`` at once.

    For the sweeper, which must never wait for (or remove from under) a live request. Only
    call it where no coroutine of this process can hold the same path (it runs on the loop
    between awaits, and :class:`LockTable` releases its file lock only when done).
    """
    try:
        fd = _open_locked(path, block=False)
    except OSError:
        fd = None
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)


class LockTable:
    """Cross-process exclusive locks by lock-file path, usable from coroutines."""

    def __init__(self) -> None:
        self._local: dict[str, list[object]] = {}

    def held_here(self, path: Path) -> bool:
        """Whether a coroutine of this process holds or waits for ``path``."""
        return str(path) in self._local

    @contextlib.asynccontextmanager
    async def hold(self, path: Path) -> AsyncIterator[None]:
        """Hold ``path``'s lock: first in this process, then across processes."""
        key = str(path)
        entry = self._local.get(key)
        if entry is None:
            entry = self._local[key] = [asyncio.Lock(), 0]
        entry[1] = int(entry[1]) + 1  # type: ignore[call-overload]
        lock: asyncio.Lock = entry[0]  # type: ignore[assignment]
        try:
            async with lock:
                delay = _POLL_FIRST
                while (fd := _open_locked(path, block=False)) is None:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _POLL_MAX)
                try:
                    yield
                finally:
                    os.close(fd)
        finally:
            entry[1] = int(entry[1]) - 1  # type: ignore[call-overload]
            if entry[1] == 0:
                del self._local[key]
