"""A small HTTP/1.1 client connection on h11 that sends file bytes with ``sendfile``.

Why it exists: on a fast link the client's CPU is the limit, and on a 2-core machine it is
shared with the server. Through httpx every byte of a chunk is copied three times in user
space (``pread`` into a new ``bytes``, the body iterator, the socket write) before the
kernel copies it once more. ``os.sendfile`` moves the file's pages from the page cache to
the socket inside the kernel: no user-space copy, no Python call per megabyte.

:class:`WireConnection` is one keep-alive connection of one stream (see
:class:`~nbupload.engine.transport.StreamClient`): h11 frames the request and parses the
answer (sans-I/O, as the project's protocols are), this module does the socket I/O. The
body is written in pieces as in :mod:`~nbupload.engine.transport`: between two pieces the
task's flags (pause, cancel, source changed) are checked, the stall watchdog runs and the
rate cap (:mod:`~nbupload.engine.ratelimit`) is paid. :meth:`WireConnection.abort` shuts
the socket down from any thread, so a blocked ``sendfile`` or ``recv`` returns at once.

Only plain ``http://`` URLs without user info take this path (:func:`wire_eligible`); TLS
and injected transports stay on httpx. A body part
whose bytes someone must see (the WCS etag is computed while sending) is read with
``pread`` and written with ``sendall``, still without httpx's extra copies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

import h11
import httpx

from ..protocols.multipart import FilePart, FileSource, MultipartEncoder, ShortReadError
from .errors import Stalled
from .ratelimit import Throttle
from .redact import redact_url

#: DEBUG: one line per request (method, URL with secret-looking query values masked, status),
#: as httpx logs its own; headers and bodies are never logged (they carry tokens).
_log = logging.getLogger(__name__)

__all__ = [
    "MAX_COPY_PIECE",
    "MAX_SEND_PIECE",
    "PIECE_TARGET",
    "WireAnswer",
    "WireConnection",
    "WireError",
    "wire_eligible",
]

#: How long one piece of a body may take to go out (pause, cancel and stalls are checked between pieces).
PIECE_TARGET = 0.05
#: The largest piece ``sendfile`` is asked for at once (no memory is spent on it).
MAX_SEND_PIECE = 8 << 20
#: The largest piece read into memory when the bytes must be seen (memory stays bounded by it).
MAX_COPY_PIECE = 1 << 20
_RECV = 64 * 1024


class WireError(Exception):
    """Transport trouble on a :class:`WireConnection`; ``kind`` is ``connect``, ``timeout``,
    ``protocol`` or ``lost`` (what :func:`~nbupload.engine.transport.post` reports)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class WireAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    body_seconds: float


def wire_eligible(url: httpx.URL) -> bool:
    """Whether a request to ``url`` can go on a :class:`WireConnection`: plain HTTP without
    user info (httpx turns that into Basic auth). The caller also keeps a request that the
    environment sends through a proxy (``transport.env_proxy``) on httpx."""
    return url.scheme == "http" and not url.userinfo


class _Span:
    """A stand-in for ``n`` body bytes that go out by another way (see ``send_with_data_passthrough``)."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


_HAS_SENDFILE = hasattr(os, "sendfile")


def _ready(sock: socket.socket, events: int, timeout: float | None) -> bool:
    """Whether ``sock`` gets one of ``events`` (``select.POLLIN``/``POLLOUT``) within ``timeout``
    seconds; errors and hang-ups count as ready (the next call on the socket reports them)."""
    if hasattr(select, "poll"):  # any fd number, unlike select()
        poller = select.poll()
        poller.register(sock, events)
        return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))
    want = [sock]
    r, w, x = select.select(want if events & select.POLLIN else [], want if events & select.POLLOUT else [],
                            want, timeout)  # fmt: skip
    return bool(r or w or x)


def _readable(sock: socket.socket) -> bool:
    """An idle keep-alive socket that is readable was closed (or spoke out of turn) by the server."""
    try:
        return _ready(sock, select.POLLIN, 0)
    except (OSError, ValueError):
        return True


class WireConnection:
    """One keep-alive HTTP/1.1 connection (plain TCP), reused while the server keeps it open."""

    def __init__(self, user_agent: str) -> None:
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._h11: h11.Connection | None = None
        self._origin: tuple[str, int] | None = None
        self._aborted = False

    # ------------------------------------------------------------------ lifetime
    def abort(self) -> None:
        """Cut the connection now (from any thread): a reset, so the server drops what it buffered.

        Like httpx's connections here, only the connection open now is cut: the task's flags,
        checked before a request sends anything, stop the next one (a pause withdrawn at once by
        a resume lets the stream go on with a new connection)."""
        with self._lock:
            self._aborted = True
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in sendfile or recv

    def close(self) -> None:
        with self._lock:
            sock, self._sock, self._h11, self._origin = self._sock, None, None, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _connect(self, host: str, port: int, timeout: float | None) -> tuple[socket.socket, h11.Connection]:
        with self._lock:
            sock, conn = self._sock, self._h11
            fresh = (
                sock is not None
                and conn is not None
                and self._origin == (host, port)
                and conn.our_state is h11.IDLE
                and not _readable(sock)
            )
        if fresh:
            assert sock is not None and conn is not None
            return sock, conn
        self.close()
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as exc:
            raise WireError("timeout", f"timed out (ConnectTimeout): {exc}") from None
        except OSError as exc:
            raise WireError("connect", f"cannot connect: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)
        with self._lock:
            self._sock, self._h11, self._origin = sock, conn, (host, port)
        return sock, conn

    def preconnect(self, url: httpx.URL, timeout: float | None) -> None:
        """Open the connection to ``url``'s server now, so the first request does not wait for
        it; trouble is left for that request to meet (and report)."""
        with contextlib.suppress(WireError):
            self._connect(url.host, url.port or 80, timeout)

    # ------------------------------------------------------------------ one request
    def request(
        self,
        url: httpx.URL,
        headers: list[tuple[bytes, bytes]],
        body: bytes | MultipartEncoder,
        *,
        timeout: httpx.Timeout,
        check: Callable[[], None],
        stall_timeout: float,
        on_sent: Callable[[int], None],
        on_file: Callable[[memoryview], None] | None,
        throttle: Throttle | None,
        max_answer: int,
    ) -> WireAnswer:
        """POST ``body`` and read the answer (at most ``max_answer`` bytes of it).

        ``on_sent`` counts the file part's bytes as they go out; ``on_file``, when given,
        sees them (and then they are read, not sent with ``sendfile``).
        """
        host, port = url.host, url.port or 80
        with self._lock:
            self._aborted = False  # an abort cuts the request under way, not the stream's next ones
        sock, conn = self._connect(host, port, timeout.connect)
        target = url.raw_path
        head = [(b"Host", url.netloc), (b"User-Agent", self.user_agent.encode()),
                (b"Accept", b"*/*"), (b"Accept-Encoding", b"identity")]  # fmt: skip
        names = {k.lower() for k, _ in headers}
        head = [(k, v) for k, v in head if k.lower() not in names] + headers
        if isinstance(body, bytes) and b"content-length" not in names:
            head.append((b"Content-Length", str(len(body)).encode()))
        body_seconds = 0.0
        try:
            sock.settimeout(timeout.write)
            try:
                try:
                    data = conn.send(h11.Request(method="POST", target=target, headers=head))
                except h11.LocalProtocolError as exc:
                    raise WireError("lost", f"connection lost (LocalProtocolError): {exc}") from None
                assert data is not None
                if isinstance(body, bytes):
                    framed = conn.send(h11.Data(data=body)) if body else b""
                    sock.sendall(data + (framed or b""))
                else:
                    sock.sendall(data)
                    began = time.monotonic()
                    self._send_body(sock, conn, body, check, stall_timeout, on_sent, on_file, throttle)
                    body_seconds = time.monotonic() - began
                conn.send(h11.EndOfMessage())
            except ShortReadError:
                raise
            except OSError as exc:
                # The server may have answered early (413, 401) and closed: read that answer.
                with self._lock:
                    aborted = self._aborted
                if aborted or isinstance(exc, TimeoutError):
                    raise self._write_error(exc) from None
                try:
                    answer = self._read_answer(sock, conn, timeout, check, max_answer, body_seconds)
                except WireError:
                    raise self._write_error(exc) from None
                self.close()
                return answer
            answer = self._read_answer(sock, conn, timeout, check, max_answer, body_seconds)
        except BaseException:
            self.close()
            raise
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            self.close()
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("POST %s -> %d", redact_url(str(url))[0], answer.status)
        return answer

    @staticmethod
    def _write_error(exc: OSError) -> WireError:
        if isinstance(exc, TimeoutError):
            return WireError("timeout", f"timed out (WriteTimeout): {exc}")
        return WireError("lost", f"connection lost ({type(exc).__name__}): {exc}")

    def _send_body(
        self,
        sock: socket.socket,
        conn: h11.Connection,
        body: MultipartEncoder,
        check: Callable[[], None],
        stall_timeout: float,
        on_sent: Callable[[int], None],
        on_file: Callable[[memoryview], None] | None,
        throttle: Throttle | None,
    ) -> None:
        piece = body.piece_size
        smallest = piece
        last = time.monotonic()
        for item in body.segments():
            check()
            if not isinstance(item, FilePart):
                if throttle is not None:
                    throttle.take(len(item), check)
                framed = conn.send(h11.Data(data=item))
                sock.sendall(framed or b"")
                continue
            pos, end = item.offset, item.offset + item.size
            zero_copy = _HAS_SENDFILE and on_file is None and isinstance(item.source, FileSource)
            biggest = MAX_SEND_PIECE if zero_copy else MAX_COPY_PIECE
            while pos < end:
                want = min(piece, end - pos)
                if throttle is not None:
                    want = min(want, throttle.piece_limit())
                    throttle.take(want, check)
                check()
                now = time.monotonic()
                if now - last > stall_timeout:
                    raise Stalled(f"no bytes went out for {now - last:.0f} s")
                # h11 counts the piece against Content-Length and hands it back unframed
                # (its documented way to use sendfile); the bytes go out below.
                conn.send_with_data_passthrough(h11.Data(data=cast(bytes, _Span(want))))
                if zero_copy:
                    assert isinstance(item.source, FileSource)
                    self._sendfile(sock, item.source.fd, pos, want)
                else:
                    data = item.source.pread(want, pos)
                    if len(data) != want:
                        raise ShortReadError(
                            f"source returned {len(data)} bytes at offset {pos}, expected {want}: "
                            "it was truncated or changed while uploading"
                        )
                    view = memoryview(data)
                    sock.sendall(view)
                    if on_file is not None:
                        on_file(view)
                pos += want
                on_sent(want)
                last = time.monotonic()
                took = last - now
                if took < PIECE_TARGET / 4 and piece < biggest:
                    piece = min(piece * 2, biggest)
                elif took > PIECE_TARGET and piece > smallest:
                    piece = max(piece // 2, smallest)
        check()

    @staticmethod
    def _sendfile(sock: socket.socket, fd: int, offset: int, count: int) -> None:
        """``count`` bytes of ``fd`` from ``offset`` to the socket, in the kernel."""
        out = sock.fileno()
        timeout = sock.gettimeout()
        while count > 0:
            try:
                n = os.sendfile(out, fd, offset, count)
            except BlockingIOError:
                n = -1
            if n == 0:
                raise ShortReadError(
                    f"the file ended at offset {offset} with {count} bytes still expected: "
                    "it was truncated or changed while uploading"
                )
            if n < 0:
                if not _ready(sock, select.POLLOUT, timeout):
                    raise TimeoutError("timed out")
                continue
            offset += n
            count -= n

    def _read_answer(
        self,
        sock: socket.socket,
        conn: h11.Connection,
        timeout: httpx.Timeout,
        check: Callable[[], None],
        max_answer: int,
        body_seconds: float,
    ) -> WireAnswer:
        sock.settimeout(timeout.read)
        response: h11.Response | None = None
        data = bytearray()
        for event in self._events(sock, conn):
            check()
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                data += event.data
                if len(data) > max_answer:
                    self.close()  # the rest is not read: the connection cannot be reused
                    break
            elif isinstance(event, h11.EndOfMessage):
                break
        if response is None:
            raise WireError(
                "protocol", "connection lost (RemoteProtocolError): no answer before the server hung up"
            )
        return WireAnswer(
            response.status_code,
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers],
            bytes(data[:max_answer]),
            body_seconds,
        )

    @staticmethod
    def _events(sock: socket.socket, conn: h11.Connection) -> Iterator[h11.Event]:
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise WireError("protocol", f"connection lost (RemoteProtocolError): {exc}") from None
            if event is h11.NEED_DATA:
                try:
                    chunk = sock.recv(_RECV)
                except TimeoutError as exc:
                    raise WireError("timeout", f"timed out (ReadTimeout): {exc}") from None
                except OSError as exc:
                    raise WireError("lost", f"connection lost ({type(exc).__name__}): {exc}") from None
                if not chunk and conn.their_state is h11.SEND_RESPONSE:
                    raise WireError(
                        "protocol", "connection lost (RemoteProtocolError): Server disconnected without "
                        "sending a response."
                    )  # fmt: skip
                conn.receive_data(chunk)
                continue
            if event is h11.PAUSED:
                raise WireError(
                    "protocol", "connection lost (RemoteProtocolError): the server spoke out of turn"
                )
            if isinstance(event, h11.InformationalResponse):
                continue
            assert not isinstance(event, type)  # NEED_DATA and PAUSED handled above
            yield event
            if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return
