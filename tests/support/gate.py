"""A gate in front of a server, so that an upload cannot finish before the test has acted on it.

Tests that pause, cancel, interrupt, kill or shut down an upload "once it has started" used to
wait for some bytes to be acknowledged and then act, trusting a throttled server to be still
busy: on a loaded machine the upload sometimes finished in between. :class:`ChunkGate` takes
the race away: it forwards the first ``passes`` data requests (uploader chunks, WCS appends)
to the server, then holds every later one, unforwarded, until :meth:`ChunkGate.open`. Queries
and other bodiless or form-encoded requests always pass, so a resume can ask what the server
holds. Whatever the scheduling, the upload has exactly the passed requests' bytes acknowledged
and can go no further while the gate is shut.

The gate reads a held request's body into a temporary file (so the client has sent it all and
waits for an answer, as from a slow server). :meth:`ChunkGate.allow` lets the oldest held
requests go on, whole, as if the server had only been slow. :meth:`ChunkGate.open` lets every
later request through and closes the connections of the requests still held: those never
reach the server (a client still waiting on one sees a cut connection and sends the chunk
again; one that paused or cancelled is gone anyway), so the server's byte counts are those of
the requests passed.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
from typing import IO
from urllib.parse import urlsplit

from .front import LoopbackFront, content_length, header, read_head, relay, relay_answer, shutdown_and_close

__all__ = ["ChunkGate"]


class _ToFile:
    """A held request's body goes to a file, through :func:`relay` as to a socket."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file

    def sendall(self, data: bytes, /) -> None:
        self.file.write(data)


def _is_data(head: bytes) -> bool:
    """A request that carries upload bytes: a POST or PUT with a body that is not a form query."""
    method = head.split(b" ", 1)[0].upper()
    length = content_length(head)
    form = header(head, b"content-type").lower().startswith(b"application/x-www-form-urlencoded")
    return method in (b"POST", b"PUT") and length > 0 and not form


class ChunkGate(LoopbackFront):
    """``with ChunkGate(server.url, passes=2) as gate:`` upload to ``gate.upload_url``.

    ``passed``: data requests forwarded so far; ``held``: data requests held so far (each
    one until :meth:`allow` lets it go on or :meth:`open` cuts it). HTTP/1.1 over loopback (the
    reference server's answers carry ``Content-Length``, which is all this relays by). For an
    HTTPS server the gate ends TLS and starts it again: ``server_ssl`` is what it presents to
    clients (the server's own certificate will do), ``upstream_ssl`` what it checks the server
    with.
    """

    thread_name = "chunk-gate"

    def __init__(
        self,
        target_url: str,
        passes: int,
        *,
        server_ssl: ssl.SSLContext | None = None,
        upstream_ssl: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(target_url)
        tls = parts.scheme == "https"
        if parts.scheme not in ("http", "https") or parts.hostname is None or parts.port is None:
            raise ValueError(f"ChunkGate fronts an http(s)://host:port server, not {target_url!r}")
        if tls != (server_ssl is not None and upstream_ssl is not None):
            raise ValueError("an https server needs server_ssl and upstream_ssl; a plain one neither")
        self.target = (parts.hostname, parts.port)
        self._server_ssl, self._upstream_ssl = server_ssl, upstream_ssl
        self.passes = passes
        self.passed = 0
        self.held = 0
        self._opened = threading.Event()
        self._held: list[tuple[socket.socket, threading.Event]] = []  # oldest first
        super().__init__()

    @property
    def url(self) -> str:
        scheme = "https" if self._server_ssl is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def upload_url(self) -> str:
        """The reference server's uploader route, through the gate."""
        return self.url + "/upload"

    def open(self) -> None:
        """Let every later request through; close the connections of the requests held."""
        with self._lock:
            self._opened.set()
            held, self._held = self._held, []
        for sock, _go in held:
            shutdown_and_close(sock)

    def allow(self, n: int) -> None:
        """Let ``n`` more data requests through, then hold again: the oldest held ones go on
        first (whole, from where the gate kept their bodies), then new ones."""
        with self._lock:
            self.passes += n
            while self._held and self.passed < self.passes:
                _sock, go = self._held.pop(0)
                self.passed += 1
                go.set()

    def close(self) -> None:
        self.open()
        super().close()

    def _handle(self, client: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(client,), name="chunk-gate-conn", daemon=True).start()

    def _admit(self, client: socket.socket, head: bytes, buf: bytearray) -> bool | IO[bytes]:
        """True: this request goes on now. A held one has its body read into a file, then
        waits here: the file when :meth:`allow` lets it go on, False when :meth:`open` cut it."""
        if not _is_data(head):
            return True
        go = threading.Event()
        with self._lock:
            if self._opened.is_set() or self.passed < self.passes:
                self.passed += 1
                return True
            self.held += 1
            self._held.append((client, go))
        body = tempfile.TemporaryFile()  # noqa: SIM115 - handed on to _serve, which closes it
        try:  # ends early when open() closes the connection
            whole = relay(client, _ToFile(body), buf, content_length(head))
        except OSError:
            whole = False
        while not (go.wait(0.5) or self._opened.is_set()):
            pass
        if go.is_set() and whole:
            body.seek(0)
            return body
        body.close()
        return False  # its connection is closed by open(): never forwarded

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        buf = bytearray()
        try:
            if self._server_ssl is not None:
                client.settimeout(60)  # the handshake, in this connection's own thread
                client = self._server_ssl.wrap_socket(client, server_side=True)
                client.settimeout(None)
            self.track(client)
            while True:
                head = read_head(client, buf)
                if head is None:
                    return
                admitted = self._admit(client, head, buf)
                if admitted is False:
                    return
                if upstream is None:
                    upstream = socket.create_connection(self.target, timeout=120)
                    if self._upstream_ssl is not None:
                        upstream = self._upstream_ssl.wrap_socket(upstream, server_hostname=self.target[0])
                    self.track(upstream)
                upstream.sendall(head)
                if admitted is True:
                    if not relay(client, upstream, buf, content_length(head)):
                        return
                else:  # a held request let go: its body from the file
                    with admitted:
                        while piece := admitted.read(1 << 16):
                            upstream.sendall(piece)
                if not relay_answer(upstream, client):
                    return
        except OSError:
            return
        finally:
            if upstream is not None:
                shutdown_and_close(upstream)
            shutdown_and_close(client)
