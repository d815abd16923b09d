"""What the test fronts share. A *front* is a loopback TCP listener that a test puts in
front of the real reference server: the client under test connects to the front, and the
front passes each connection on to the server, doing on the way whatever the test needs
(a fault, a held request, a proxy's rewriting).

:class:`~tests.support.proxy.FaultProxy` (TCP-level faults), :class:`~tests.support.gate.ChunkGate`,
:class:`~tests.support.httpproxy.ForwardProxy` and the chaos campaign's HTTP-aware
``BurstFront`` all accept connections on an ephemeral port, hand each to their own logic,
and must be able to end every connection they opened: that shared part is here, with what
the HTTP-aware fronts share to follow HTTP/1.1 framing: reading a head (until the blank
line, however many ``recv`` calls it takes), finding a header in it, and relaying exactly
``Content-Length`` body bytes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Protocol

__all__ = [
    "LoopbackFront",
    "content_length",
    "header",
    "read_head",
    "relay",
    "relay_answer",
    "shutdown_and_close",
]


class _Sends(Protocol):
    """Where :func:`relay` sends: a socket, or a sink that drops a body nobody is to see."""

    def sendall(self, data: bytes, /) -> object: ...


def read_head(sock: socket.socket, buf: bytearray, limit: int | None = None) -> bytes | None:
    """Bytes up to and including the blank line; ``buf`` keeps whatever came after. ``None``
    when the peer closes first, or when ``limit`` bytes came without a blank line."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
        if limit is not None and len(buf) > limit:
            return None
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end])
    del buf[:end]
    return head


def header(head: bytes, name: bytes) -> bytes:
    """The value of the first header called ``name`` (lower case) in ``head``, stripped;
    ``b""`` when there is none. The request or status line is not a header."""
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return b""


def content_length(head: bytes) -> int:
    """The body length ``head`` announces; 0 when it announces none (the reference server and
    the engine always send ``Content-Length`` for a body)."""
    return int(header(head, b"content-length") or b"0")


def relay(
    src: socket.socket,
    dst: _Sends,
    buf: bytearray,
    n: int,
    *,
    piece: int = 1 << 16,
    count: Callable[[int], None] | None = None,
) -> bool:
    """Send exactly ``n`` body bytes to ``dst``: what ``buf`` already holds first (taken out
    of it; what lies beyond the body stays there), then from ``src`` in ``recv``s of at most
    ``piece`` bytes. ``count`` is told each amount sent. False when ``src`` closed first."""
    if buf:
        take = bytes(buf[:n])
        del buf[: len(take)]
        dst.sendall(take)
        n -= len(take)
        if count is not None:
            count(len(take))
    while n > 0:
        data = src.recv(min(n, piece))
        if not data:
            return False
        dst.sendall(data)
        n -= len(data)
        if count is not None:
            count(len(data))
    return True


def relay_answer(upstream: socket.socket, client: _Sends, *, piece: int = 1 << 16) -> bool:
    """Pass the server's answer to one request on to the client: its head, then its
    ``Content-Length`` body. False when either side closed first (the front then ends the
    connection). The server answers one request at a time, so nothing follows the body."""
    back = bytearray()
    answer = read_head(upstream, back)
    if answer is None:
        return False
    client.sendall(answer)
    return relay(upstream, client, back, content_length(answer), piece=piece)


def shutdown_and_close(sock: socket.socket) -> None:
    """End a connection at once (FIN to the peer), ignoring sockets already gone."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class LoopbackFront:
    """Listen on 127.0.0.1:0 and pass each accepted client to :meth:`_handle`.

    Subclasses set up their own state before calling ``super().__init__()``, which starts
    the accept thread. Sockets registered with :meth:`track` are ended by
    :meth:`close_connections` and :meth:`close`.
    """

    thread_name = "loopback-front"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name=self.thread_name, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._socks.extend(socks)

    def _handle(self, client: socket.socket) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._handle(client)

    def _take_socks(self) -> list[socket.socket]:
        with self._lock:
            socks, self._socks = self._socks, []
        return socks

    def close_connections(self) -> None:
        """Close every connection opened so far and keep listening (the end of a run)."""
        for sock in self._take_socks():
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(2)
        for sock in self._take_socks():
            shutdown_and_close(sock)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
