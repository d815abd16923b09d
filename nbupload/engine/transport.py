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
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx

from ..protocols.multipart import MultipartEncoder, ShortReadError
from .config import EngineConfig
from .errors import Interrupted, Stalled, StepFailed
from .retry import is_retryable_status, parse_retry_after
from .state import TaskError

__all__ = ["MAX_ANSWER", "Reply", "build_client", "build_timeout", "post", "status_failure"]

#: Answers are small; we never read more than this of one.
MAX_ANSWER = 256 * 1024


@dataclass(frozen=True)
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))


def build_client(
    config: EngineConfig, extra_connections: int = 2, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """The shared client: pool sized to the workers, explicit timeouts, no redirects."""
    from .._version import __version__

    n = config.workers + extra_connections
    return httpx.Client(
        transport=transport,
        limits=httpx.Limits(max_connections=n, max_keepalive_connections=n, keepalive_expiry=30.0),
        timeout=build_timeout(config),
        follow_redirects=False,
        verify=_verify(config.verify),
        headers={"User-Agent": config.user_agent or f"nbupload/{__version__}"},
    )


def _verify(verify: bool | str) -> bool | ssl.SSLContext:
    """httpx's ``verify``: a CA bundle path becomes a context (httpx deprecates paths)."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def build_timeout(config: EngineConfig) -> httpx.Timeout:
    return httpx.Timeout(
        connect=config.connect_timeout,
        read=config.read_timeout,
        write=config.write_timeout,
        pool=config.pool_timeout,
    )


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
) -> Iterator[bytes]:
    pos = 0
    last = time.monotonic()
    file_end = file_start + file_len
    smallest = encoder.piece_size
    for piece in encoder:
        check()
        now = time.monotonic()
        if now - last > stall_timeout:
            raise Stalled(f"no bytes went out for {now - last:.0f} s")
        yield piece  # resumed once the piece is written to the socket
        last = time.monotonic()
        took = last - now
        if took < PIECE_TARGET / 4 and encoder.piece_size < MAX_PIECE:
            encoder.piece_size = min(encoder.piece_size * 2, MAX_PIECE)
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
        if isinstance(exc, httpx.RemoteProtocolError) and request is not None and request.url.scheme == "http":
            # what a TLS port does with plain HTTP: it hangs up without an HTTP answer
            msg += " (if the server speaks HTTPS, use an https:// URL)"
    return StepFailed(TaskError(msg, retryable=True), ambiguous=True)


def post(
    client: httpx.Client,
    url: str,
    *,
    headers: dict[str, str],
    body: bytes | MultipartEncoder,
    timeout: httpx.Timeout,
    check: Callable[[], None],
    stall_timeout: float,
    file_len: int = 0,
    on_file: Callable[[memoryview], None] | None = None,
) -> Reply:
    """POST and return the answer; transport trouble becomes a retryable :class:`StepFailed`.

    ``Interrupted`` (pause/cancel) propagates as is. For a multipart body the file part is
    the last part, so its bytes are located by ``file_len`` from the end.
    """
    if isinstance(body, MultipartEncoder):
        suffix = 2 + len(f"--{body.boundary}--\r\n")
        start = body.content_length - suffix - file_len
        content: bytes | Iterator[bytes] = _stream(body, check, stall_timeout, start, file_len, on_file)
        headers = {**headers, **body.headers}
    else:
        check()
        content = body
    try:
        with client.stream("POST", url, content=content, headers=headers, timeout=timeout) as resp:
            data = bytearray()
            for part in resp.iter_bytes():
                check()
                data += part
                if len(data) > MAX_ANSWER:
                    break
            return Reply(resp.status_code, resp.headers, bytes(data[:MAX_ANSWER]))
    except (Interrupted, ShortReadError):
        raise
    except Stalled as exc:
        raise StepFailed(TaskError(f"stalled: {exc}", retryable=True), ambiguous=True) from None
    except httpx.TransportError as exc:
        raise _transport_error(exc) from None
    except httpx.StreamError as exc:
        raise _transport_error(exc) from None


def status_failure(reply: Reply, message: str, code: int | str | None = None) -> StepFailed:
    """A failure answer, retryable for 408, 429 and 5xx (``Retry-After`` honoured)."""
    retryable = is_retryable_status(reply.status)
    return StepFailed(
        TaskError(message, code=code, status=reply.status, retryable=retryable),
        retry_after=reply.retry_after if retryable else None,
    )
