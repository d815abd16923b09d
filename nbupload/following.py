"""Follow a growing file: keep a WCS appendable object in step with a log as it is written.

``f = nbupload.follow("train.log", url, key="run7/train.log", access_key=..., ...)`` returns
a :class:`Follower` at once. A thread checks the file every ``interval`` seconds (2 s) and
appends what it gained, through :func:`nbupload.open_append` (so lost answers are recovered
as PROTOCOLS.md B5 says and the whole object's hash is checked on stop), until
``f.stop()``, or until the file has not grown for ``idle`` seconds when ``idle`` is given.

Where it starts. The object's size on the server is the position: the file's first that many
bytes must be the object's (their etag is compared with the hash the server returns for an
empty append), so following again after a stop, a crash or a kernel restart goes on where
the server is, and a different file is refused rather than appended to another's object.

Never garbage. The file is read through the descriptor opened at the start. Each check
compares the path's inode with it (a *replacement*, as log rotation by rename does), its
size with what was already sent (a *truncation*, as rotation by ``copytruncate`` does), and
the last bytes sent with the file's bytes at the same place (a rewrite in place). Any of
these ends the follower with ``state`` ``"rotated"`` or ``"truncated"`` and a message, and
nothing of the new content is appended: follow the new file into a new object.

The module is ``following`` (not ``follow``) so that importing it never replaces the function
``nbupload.follow`` with a module of the same name.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .append import AppendStream, AppendStreamError, open_append

__all__ = ["FollowError", "Follower", "follow"]

_READ = 1 << 20
_TAIL = 4096  # bytes before the position compared at every check (a rewrite in place)


class FollowError(AppendStreamError):
    """Following stopped because the file was replaced or truncated (``code`` says which)."""


class Follower:
    """A running follow; :meth:`stop`, :meth:`wait`, and ``state``/``position``/``error``.

    ``state``: ``"following"``, then ``"stopped"`` (asked), ``"idle"`` (no growth for
    ``idle`` s), ``"rotated"``/``"truncated"`` (see the module) or ``"failed"`` (an append
    failed: ``error`` holds the server's code). ``verified`` tells whether the object's hash
    matched the file's bytes when it ended.
    """

    def __init__(
        self,
        path: str,
        stream: AppendStream,
        fd: int,
        *,
        interval: float,
        idle: float | None,
        on_append: Callable[[int], None] | None,
        tail: bytes = b"",
    ) -> None:
        self.path = path
        self.state = "following"
        self.error: BaseException | None = None
        self.started = stream.start
        self.appends = 0
        self._stream = stream
        self._fd = fd
        self._ino = os.fstat(fd).st_ino
        self._interval = interval
        self._idle = idle
        self._on_append = on_append
        self._tail = tail  # the last bytes the object holds, as read from the file
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nbupload-follow", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<Follower {self.path!r} -> {self._stream._sender._name()} at {self.position} ({self.state})>"

    def __enter__(self) -> Follower:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def position(self) -> int:
        """The object's size as far as this follower knows (bytes the server holds)."""
        return self._stream.position

    @property
    def verified(self) -> bool:
        return self._stream.verified

    @property
    def hash(self) -> str | None:
        return self._stream.hash

    def stop(self, timeout: float = 30.0) -> Follower:
        """Append what the file holds now, check the hash, end. Idempotent."""
        self._stop.set()
        self.wait(timeout)
        return self

    def wait(self, timeout: float | None = None) -> Follower:
        """Until the follower ends (idle, stopped, rotated, failed); ``TimeoutError`` first."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"still following {self.path} after {timeout} s")
        return self

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        last_growth = time.monotonic()
        try:
            while True:
                stopping = self._stop.is_set()
                grew = self._check_and_send()
                now = time.monotonic()
                if grew:
                    last_growth = now
                if stopping:
                    self._finish("stopped")
                    return
                if self._idle is not None and now - last_growth >= self._idle:
                    self._finish("idle")
                    return
                self._stop.wait(self._interval)
        except FollowError as exc:
            self.error = exc
            self.state = str(exc.code)
            self._close_quietly()
        except Exception as exc:  # noqa: BLE001 - ends the follow and is kept for the caller
            self.error = exc
            self.state = "failed"
            self._close_quietly()
        finally:
            os.close(self._fd)
            self._done.set()

    def _finish(self, state: str) -> None:
        self._stream.close()  # the hash check; raises on mismatch or failure
        self.state = state

    def _close_quietly(self) -> None:
        with contextlib.suppress(Exception):  # the first error is the one reported
            self._stream.close()

    def _check_and_send(self) -> bool:
        """One check: refuse replacement, truncation, rewrite; append the growth."""
        sent = self.position  # what the object holds: the file's [0, sent)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise FollowError(
                f"{self.path} was removed or renamed (rotated) after {sent} bytes were appended; "
                "follow the new file into a new object",
                code="rotated",
            ) from None
        if st.st_ino != self._ino:
            raise FollowError(
                f"{self.path} was replaced by another file (rotated) after {sent} bytes; nothing "
                "of the new file was appended: follow it into a new object",
                code="rotated",
            )
        size = os.fstat(self._fd).st_size
        if size < sent:
            raise FollowError(
                f"{self.path} was truncated to {size} bytes after {sent} were appended; nothing "
                "more was appended",
                code="truncated",
            )
        if sent:
            tail = min(_TAIL, sent)
            if os.pread(self._fd, tail, sent - tail) != self._tail:
                raise FollowError(
                    f"{self.path} was rewritten before byte {sent} (already appended); nothing "
                    "more was appended",
                    code="truncated",
                )
        if size == sent:
            return False
        offset = sent
        while offset < size:
            data = os.pread(self._fd, min(_READ, size - offset), offset)
            if not data:
                break
            self._stream.write(data)
            offset += len(data)
            self._remember_tail(data)
        self._stream.flush()
        self.appends += 1
        if self._on_append is not None:
            self._on_append(self.position)
        return True

    def _remember_tail(self, data: bytes) -> None:
        self._tail = (self._tail + data)[-_TAIL:]


def follow(
    path: str | os.PathLike[str],
    url: str,
    *,
    key: str | None = None,
    interval: float = 2.0,
    idle: float | None = None,
    on_append: Callable[[int], None] | None = None,
    **options: Any,
) -> Follower:
    """Follow ``path`` into WCS object ``key`` (default: the file's name); see the module.

    ``options`` are :func:`nbupload.open_append`'s credentials and settings (``token=`` or
    ``access_key=`` + ``secret_key=`` + ``scope=``, ``mime=``, ``timeout=``...).
    ``on_append(position)`` is called (in the follower's thread) after each append.
    Raises at once when the file is missing, or when the object already holds bytes that
    are not the file's first bytes (:class:`~nbupload.append.AppendHashMismatch`).
    """
    if interval <= 0:
        raise ValueError("interval must be positive (seconds)")
    if idle is not None and idle <= 0:
        raise ValueError("idle must be positive (seconds) or None")
    for bad in ("position", "prefix", "interval_flush"):
        if bad in options:
            raise TypeError(f"follow() sets {bad} itself: the object's size is the position")
    text = os.fspath(path)
    fd = os.open(text, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        # small growth goes as one append per check (on flush); a burst in appends of 4 MiB
        options.setdefault("flush_size", 4 << 20)
        options.setdefault("interval", 3600.0)
        try:
            stream = open_append(url, key=key or os.path.basename(text), prefix=text, **options)
        except ValueError as exc:
            if "shorter" in str(exc):
                raise FollowError(
                    f"the object already holds more than {text}'s {size} bytes: it is not this "
                    "file's object (or the file was truncated)",
                    code="truncated",
                ) from None
            raise
        start = stream.start
        tail = os.pread(fd, min(_TAIL, start), start - min(_TAIL, start)) if start else b""
        return Follower(text, stream, fd, interval=interval, idle=idle, on_append=on_append, tail=tail)
    except BaseException:
        os.close(fd)
        raise
