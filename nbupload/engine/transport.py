"""One HTTP request of a task: a streamed body that checks the task's flags between
pieces, explicit per-phase timeouts, no redirects, a bounded answer.

Pause and cancel take effect between two pieces of the body, so the pieces adapt: they
start at ``piece_size`` (64 KiB by default) and double while each leaves in under a quarter
of ``PIECE_TARGET`` seconds, up to ``MAX_PIECE``, and halve when one takes longer than
``PIECE_TARGET``. A fast link gets big pieces (fewer copies and calls: the benchmark's
plain upload went from 1120-1280 to 1360-1720 MiB/s with 1 MiB pieces), a slow one small
pieces, and pause or cancel lands within about ``PIECE_TARGET`` on either. The stall watchdog is
the same loop: a piece that took longer than ``stall_timeout`` to go out aborts the
request; while waiting for the answer, httpx's read timeout does the same job.

Pause and cancel must not wait for a piece to drain into a slow link (7.6 s at 512 KiB/s),
so every request runs on a :class:`StreamClient`: one keep-alive connection of one stream,
whose sockets :meth:`StreamClient.abort` shuts down from another thread. The blocked
``send``/``recv`` returns at once, httpx raises, and the driver sees the pause or cancel.
:class:`ClientPool` lends these clients out, at most ``workers x streams`` at a time.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from ..protocols.multipart import MultipartEncoder, ShortReadError
from .config import EngineConfig
from .errors import Interrupted, Stalled, StepFailed
from .ratelimit import Throttle
from .retry import is_retryable_status, parse_retry_after
from .state import TaskError
from .wire import WireConnection, WireError, wire_eligible

__all__ = [
    "MAX_ANSWER",
    "ClientPool",
    "Reply",
    "StreamClient",
    "build_client",
    "build_timeout",
    "env_proxy",
    "make_ssl_context",
    "post",
    "status_failure",
]

#: Answers are small; we never read more than this of one.
MAX_ANSWER = 256 * 1024


@dataclass(frozen=True)
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes
    #: seconds the whole request took, and the part of them spent writing the body
    seconds: float = 0.0
    body_seconds: float = 0.0

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))


def build_client(
    config: EngineConfig,
    extra_connections: int = 2,
    transport: httpx.BaseTransport | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.Client:
    """The shared client: pool sized to the workers, explicit timeouts, no redirects."""
    from .._version import __version__

    n = config.workers + extra_connections
    return httpx.Client(
        transport=transport,
        limits=httpx.Limits(max_connections=n, max_keepalive_connections=n, keepalive_expiry=30.0),
        timeout=build_timeout(config),
        follow_redirects=False,
        verify=ssl_context if ssl_context is not None else make_ssl_context(config.verify),
        headers={"User-Agent": config.user_agent or f"nbupload/{__version__}"},
    )


def make_ssl_context(verify: bool | str) -> ssl.SSLContext:
    """The TLS context for ``verify`` (``True``: the system's CAs, ``False``: no check, a path:
    that CA bundle). Building one loads a CA bundle (tens of ms, far more on a busy machine),
    so each :class:`ClientPool` builds it once and every stream's client shares it."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)  # httpx deprecates paths
    return httpx.create_ssl_context(verify=verify)


def build_timeout(config: EngineConfig) -> httpx.Timeout:
    return httpx.Timeout(
        connect=config.connect_timeout,
        read=config.read_timeout,
        write=config.write_timeout,
        pool=config.pool_timeout,
    )


def env_proxy(url: httpx.URL) -> str | None:
    """The proxy the environment names for ``url`` (``http_proxy``, ``https_proxy``,
    ``all_proxy`` and ``no_proxy``, upper or lower case, as curl, requests and httpx read
    them), or ``None``. Data scientists behind a company proxy set these once for every tool;
    a stream that ignored them would fail where ``curl`` works. Loopback hosts never go
    through a proxy: the proxy's loopback is not ours (the embedded demo server is here)."""
    import ipaddress
    import urllib.request

    host_only = url.host
    if host_only == "localhost" or host_only.endswith(".localhost"):
        return None  # a proxy elsewhere cannot reach this machine's loopback (the demo server)
    try:
        if ipaddress.ip_address(host_only).is_loopback:
            return None
    except ValueError:
        pass
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy:
        return None
    host = url.host if url.port is None else f"{url.host}:{url.port}"
    if urllib.request.proxy_bypass(host):  # no_proxy (on POSIX: from the environment)
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


#: How long one piece of a body may take to go out; see the module's docstring.
PIECE_TARGET = 0.05
MAX_PIECE = 1 << 20


def _stream(
    encoder: MultipartEncoder,
    check: Callable[[], None],
    stall_timeout: float,
    file_start: int,
    file_len: int,
    on_file: Callable[[memoryview], None] | None,
    timing: dict[str, float] | None = None,
    throttle: Throttle | None = None,
) -> Iterator[bytes]:
    pos = 0
    last = time.monotonic()
    file_end = file_start + file_len
    smallest = encoder.piece_size
    if throttle is not None:
        encoder.piece_size = smallest = min(encoder.piece_size, throttle.piece_limit())
    for piece in encoder:
        if throttle is not None:
            throttle.take(len(piece), check)
        check()
        now = time.monotonic()
        if now - last > stall_timeout:
            raise Stalled(f"no bytes went out for {now - last:.0f} s")
        yield piece  # resumed once the piece is written to the socket
        last = time.monotonic()
        took = last - now
        if timing is not None:
            timing["body"] = timing.get("body", 0.0) + took
        ceiling = MAX_PIECE if throttle is None else min(MAX_PIECE, throttle.piece_limit())
        if took < PIECE_TARGET / 4 and encoder.piece_size < ceiling:
            encoder.piece_size = min(encoder.piece_size * 2, ceiling)
        elif took > PIECE_TARGET and encoder.piece_size > smallest:
            encoder.piece_size = max(encoder.piece_size // 2, smallest)
        n = len(piece)
        a, b = max(pos, file_start), min(pos + n, file_end)
        if b > a and on_file is not None:
            on_file(memoryview(piece)[a - pos : b - pos])
        pos += n
    check()


def _transport_error(exc: Exception) -> StepFailed:
    name = type(exc).__name__
    text = str(exc) or name
    if isinstance(exc, httpx.TimeoutException):
        msg = f"timed out ({name}): {text}"
    elif isinstance(exc, httpx.ConnectError):
        msg = f"cannot connect: {text}"
    else:
        msg = f"connection lost ({name}): {text}"
        request = getattr(exc, "_request", None)
        if (
            isinstance(exc, httpx.RemoteProtocolError)
            and request is not None
            and request.url.scheme == "http"
        ):
            # what a TLS port does with plain HTTP: it hangs up without an HTTP answer
            msg += " (if the server speaks HTTPS, use an https:// URL)"
    return StepFailed(TaskError(msg, retryable=True))


def post(
    sc: StreamClient,
    url: str,
    *,
    headers: dict[str, str],
    body: bytes | MultipartEncoder,
    timeout: httpx.Timeout,
    check: Callable[[], None],
    stall_timeout: float,
    file_len: int = 0,
    on_sent: Callable[[int], None] | None = None,
    on_file: Callable[[memoryview], None] | None = None,
    throttle: Throttle | None = None,
) -> Reply:
    """POST on the stream ``sc`` and return the answer; transport trouble becomes a retryable
    :class:`StepFailed`.

    ``Interrupted`` (pause/cancel) propagates as is. For a multipart body the file part is
    the last part, so its bytes are located by ``file_len`` from the end; ``on_sent`` counts
    them as they go out and ``on_file``, when given, sees them (a consumer of the bytes, such
    as the WCS etag: without one, a plain-HTTP request sends the file with ``sendfile``).
    ``throttle`` is paid before each piece of the body (the rate caps).
    """
    began = time.monotonic()
    target = httpx.URL(url)
    proxy = env_proxy(target) if sc.wire is not None else None  # an injected transport: none
    if sc.wire is not None and proxy is None and wire_eligible(target):
        return _post_wire(sc.wire, target, headers, body, timeout, check, stall_timeout, on_sent, on_file,
                          throttle, began)  # fmt: skip
    timing: dict[str, float] = {}

    def seen(view: memoryview) -> None:
        if on_sent is not None:
            on_sent(view.nbytes)
        if on_file is not None:
            on_file(view)

    if isinstance(body, MultipartEncoder):
        suffix = 2 + len(f"--{body.boundary}--\r\n")
        start = body.content_length - suffix - file_len
        content: bytes | Iterator[bytes] = _stream(
            body, check, stall_timeout, start, file_len, seen, timing, throttle=throttle
        )
        headers = {**headers, **body.headers}
    else:
        check()
        content = body
    try:
        client = sc.client_for(proxy)
        with client.stream("POST", url, content=content, headers=headers, timeout=timeout) as resp:
            data = bytearray()
            for part in resp.iter_bytes():
                check()
                data += part
                if len(data) > MAX_ANSWER:
                    break
            return Reply(
                resp.status_code,
                resp.headers,
                bytes(data[:MAX_ANSWER]),
                seconds=time.monotonic() - began,
                body_seconds=timing.get("body", 0.0),
            )
    except (Interrupted, ShortReadError):
        raise
    except Stalled as exc:
        raise StepFailed(TaskError(f"stalled: {exc}", retryable=True)) from None
    except httpx.TransportError as exc:
        raise _transport_error(exc) from None
    except httpx.StreamError as exc:
        raise _transport_error(exc) from None


def _post_wire(
    wire: WireConnection,
    url: httpx.URL,
    headers: dict[str, str],
    body: bytes | MultipartEncoder,
    timeout: httpx.Timeout,
    check: Callable[[], None],
    stall_timeout: float,
    on_sent: Callable[[int], None] | None,
    on_file: Callable[[memoryview], None] | None,
    throttle: Throttle | None,
    began: float,
) -> Reply:
    """:func:`post` on the stream's own h11 connection (:mod:`~nbupload.engine.wire`)."""
    merged = httpx.Headers(headers)
    if isinstance(body, MultipartEncoder):
        merged.update(body.headers)
    else:
        check()
    try:
        answer = wire.request(
            url,
            merged.raw,
            body,
            timeout=timeout,
            check=check,
            stall_timeout=stall_timeout,
            on_sent=on_sent or (lambda n: None),
            on_file=on_file,
            throttle=throttle,
            max_answer=MAX_ANSWER,
        )
    except (Interrupted, ShortReadError):
        raise
    except Stalled as exc:
        raise StepFailed(TaskError(f"stalled: {exc}", retryable=True)) from None
    except WireError as exc:
        msg = str(exc)
        if exc.kind == "protocol":
            # what a TLS port does with plain HTTP: it hangs up without an HTTP answer
            msg += " (if the server speaks HTTPS, use an https:// URL)"
        raise StepFailed(TaskError(msg, retryable=True)) from None
    return Reply(
        answer.status,
        # as received (latin-1 both ways): a header value httpx would not encode as ASCII,
        # such as an odd Retry-After ("²"), must not fail the task
        httpx.Headers([(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]),
        answer.body,
        seconds=time.monotonic() - began,
        body_seconds=answer.body_seconds,
    )


def preconnect(sc: StreamClient, url: str, timeout: httpx.Timeout) -> None:
    """Open ``sc``'s connection to ``url``'s server now (plain HTTP, no proxy: the wire path),
    so that its first request does not pay the connect: a task's extra streams connect while
    the uploader query is being answered, not after (on a far server, one round trip each)."""
    target = httpx.URL(url)
    if sc.wire is not None and env_proxy(target) is None and wire_eligible(target):
        sc.wire.preconnect(target, timeout.connect)


def status_failure(reply: Reply, message: str, code: int | str | None = None) -> StepFailed:
    """A failure answer, retryable for 408, 429 and 5xx (``Retry-After`` honoured)."""
    retryable = is_retryable_status(reply.status)
    return StepFailed(
        TaskError(message, code=code, status=reply.status, retryable=retryable),
        retry_after=reply.retry_after if retryable else None,
    )


class _TrackedStream(httpcore.NetworkStream):
    """A connection's stream that its owner can shut down from another thread."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        self._inner = self._inner.start_tls(ssl_context, server_hostname, timeout)
        return self

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    def shutdown(self) -> None:
        sock = self._inner.get_extra_info("socket")
        if sock is not None:
            try:
                # A reset, not a FIN, once the socket is closed: the server drops what is still
                # buffered instead of reading it, so an aborted request stops at once there too.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in send or recv
            except OSError:
                pass


class _TrackingBackend(httpcore.SyncBackend):
    """httpcore's socket backend, remembering the streams it opened (see :class:`StreamClient`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.streams: list[_TrackedStream] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        stream = _TrackedStream(super().connect_tcp(host, port, timeout, local_address, socket_options))
        with self._lock:
            self.streams = [*self.streams[-3:], stream]  # a stream keeps one connection at a time
        return stream

    def abort(self) -> None:
        with self._lock:
            streams = list(self.streams)
        for stream in streams:
            stream.shutdown()


class _AbortableTransport(httpx.HTTPTransport):
    """httpx's transport on a :class:`_TrackingBackend`: one connection, abortable."""

    def __init__(self, ssl_context: ssl.SSLContext, proxy: str | None = None) -> None:
        super().__init__(verify=ssl_context)
        self.backend = _TrackingBackend()
        self._pool: httpcore.ConnectionPool
        if proxy is None:
            self._pool = httpcore.ConnectionPool(
                ssl_context=ssl_context,
                max_connections=1,
                max_keepalive_connections=1,
                keepalive_expiry=30.0,
                network_backend=self.backend,
            )
        else:  # as httpx builds its own proxy transport, on the abortable backend
            via = httpx.Proxy(proxy)
            self._pool = httpcore.HTTPProxy(
                proxy_url=httpcore.URL(
                    scheme=via.url.raw_scheme,
                    host=via.url.raw_host,
                    port=via.url.port,
                    target=via.url.raw_path,
                ),
                proxy_auth=via.raw_auth,
                proxy_headers=via.headers.raw,
                ssl_context=ssl_context,
                proxy_ssl_context=via.ssl_context,
                max_connections=1,
                max_keepalive_connections=1,
                keepalive_expiry=30.0,
                network_backend=self.backend,
            )


class StreamClient:
    """The HTTP client of one stream: one keep-alive connection that :meth:`abort` can cut.

    Plain-HTTP requests go on :attr:`wire` (zero-copy file bytes, :mod:`.wire`); the httpx
    client (HTTPS, proxies, an injected transport) is built on first use, so an upload over
    plain HTTP never loads a CA bundle (tens of ms, more than a 100 MiB upload on loopback).
    """

    def __init__(
        self,
        config: EngineConfig,
        transport: httpx.BaseTransport | None,
        ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext],
    ) -> None:
        from .._version import __version__

        self._config = config
        self._transport = transport
        self._ssl = ssl_context
        self._lock = threading.Lock()
        self._abortables: list[_AbortableTransport] = []
        self._clients: dict[str | None, httpx.Client] = {}  # by proxy (None: direct)
        self.wire = (
            WireConnection(config.user_agent or f"nbupload/{__version__}") if transport is None else None
        )
        self.aborted = False

    @property
    def client(self) -> httpx.Client:
        """The stream's direct httpx client, built on first use."""
        return self.client_for(None)

    def client_for(self, proxy: str | None) -> httpx.Client:
        """The stream's httpx client through ``proxy`` (``None``: direct), built on first use."""
        with self._lock:
            client = self._clients.get(proxy)
            if client is None:
                ctx = self._ssl if isinstance(self._ssl, ssl.SSLContext) else self._ssl()
                transport = self._transport
                if transport is None:
                    abortable = _AbortableTransport(ctx, proxy)
                    self._abortables.append(abortable)
                    transport = abortable
                client = self._clients[proxy] = build_client(
                    self._config, transport=transport, ssl_context=ctx
                )
            return client

    def abort(self) -> None:
        """Cut the connection now (from any thread): the request on it fails at once."""
        self.aborted = True
        with self._lock:
            abortables = list(self._abortables)
        for abortable in abortables:
            abortable.backend.abort()
        if self.wire is not None:
            self.wire.abort()

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
        for client in clients:
            client.close()
        if self.wire is not None:
            self.wire.close()


class ClientPool:
    """Lends :class:`StreamClient` values to the streams of running tasks.

    A returned client keeps its connection alive for the next stream; an aborted one is
    closed. ``transport`` (tests: ``httpx.MockTransport``) replaces the network for all.
    """

    def __init__(self, config: EngineConfig, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.transport = transport
        self._lock = threading.Lock()
        self._idle: list[StreamClient] = []
        self._closed = False
        self._ssl: ssl.SSLContext | None = None

    def acquire(self) -> StreamClient:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return StreamClient(self.config, self.transport, self._ssl_context)

    def _ssl_context(self) -> ssl.SSLContext:
        """The pool's TLS context, built once, when a stream first needs httpx."""
        with self._lock:
            if self._ssl is None:
                self._ssl = make_ssl_context(self.config.verify)
            return self._ssl

    def release(self, sc: StreamClient) -> None:
        with self._lock:
            keep = not sc.aborted and not self._closed and len(self._idle) < 64
            if keep:
                self._idle.append(sc)
        if not keep:
            sc.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for sc in idle:
            sc.close()
