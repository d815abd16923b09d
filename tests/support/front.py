"""A loopback listener for the test fronts that stand between the engine and the server.

:class:`~tests.support.proxy.FaultProxy` (TCP-level faults) and the chaos campaign's
HTTP-aware ``BurstFront`` both accept connections on an ephemeral port, hand each to their
own logic, and must be able to end every connection they opened: that shared part is here,
with the reading of an HTTP head that the HTTP-aware fronts share.
"""

from __future__ import annotations

import contextlib
import socket
import threading

__all__ = ["LoopbackFront", "read_head", "shutdown_and_close"]


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
