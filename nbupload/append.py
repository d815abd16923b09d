"""An append stream for code: ``nbupload.open_append(url, key=...)`` and ``AppendHandler``.

``open_append`` returns a binary file-like writer (``write``, ``flush``, ``close``, a
context manager; ``io.TextIOWrapper`` works on top) that keeps a WCS appendable object in
step with what a program produces: rows from a loop, a log, DataFrames written in pieces.
Writes go into a bounded buffer; one sender thread sends the buffer as one WCS append
(``POST /append/<position>``) when it holds ``flush_size`` bytes, when the oldest byte in it
has waited ``interval`` seconds, or on ``flush()``/``close()``. ``write`` blocks only when
``max_buffer`` bytes wait (backpressure), so memory stays bounded whatever is written.

Layering. This is a front end written directly on :mod:`nbupload.protocols.wcs` (request
bodies, answers, the B5 replay verdict, tokens, the streaming etag) and ``httpx``, not on the
engine: the engine uploads *sources of a known size*, while a stream's size grows while it is
open and its bytes live only in this buffer until the server has acknowledged them. Retries
and backoff are therefore repeated here in a few lines rather than borrowed from
``nbupload/engine`` (which is being re-cut); when the engine grows streams this module can
become a thin shell over them without changing its API.

Recovery follows PROTOCOLS.md B5: when an answer is lost (timeout, reset) the same append is
sent again at the same position; a success means the first had not landed, a 409 whose
``x-wcs-next-append-position`` is ``position + length`` means it had, and any other position
is a conflict (someone else appended) raised as :class:`AppendConflict` with both positions,
never overwritten. On ``close()`` the hash the server returned for the whole object is
compared with an incremental etag of everything written, and a difference raises
:class:`AppendHashMismatch`.

Errors. A failure of the sender thread is kept and raised by the next ``write``, ``flush`` or
``close`` as an :class:`AppendStreamError` (an ``OSError``, as a failing file raises) carrying
the server's ``code``, HTTP ``status`` and message; the stream is dead from then on, and
``unsent`` tells how many written bytes never reached the server. It derives from
:class:`nbupload.NbuploadError` (the package's root, so ``except nbupload.NbuploadError``
catches it) and stays an ``OSError``, as a failing file raises. No token or secret key ever
appears in a message or a repr.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx

from .errors import NbuploadError
from .protocols import wcs
from .protocols.errors import ProtocolError
from .protocols.multipart import BytesSource

__all__ = [
    "AppendConflict",
    "AppendHandler",
    "AppendHashMismatch",
    "AppendStream",
    "AppendStreamError",
    "open_append",
]

#: Where the probe for the object's size appends nothing: no object is ever this large, so
#: the server answers 409 with the object's real size (B4) and changes nothing.
_PROBE_POSITION = 1 << 62
_MAX_ANSWER = 64 * 1024
_HASH_READ = 1 << 20
#: Answers after which the same append may succeed later as it is.
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504, 507})


class AppendStreamError(NbuploadError, OSError):
    """A WCS append failed (an :class:`~nbupload.NbuploadError` and an ``OSError``); ``code`` is
    the server's (string) code, ``status`` its HTTP status.

    ``position`` is where the stream was appending; ``unsent`` how many written bytes the
    server does not hold.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        position: int | None = None,
        unsent: int = 0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.position = position
        self.unsent = unsent

    def __str__(self) -> str:
        return self.message


class AppendConflict(AppendStreamError):
    """Someone else appended: the stream expected the object at ``expected`` bytes, the
    server has ``actual``. Nothing was overwritten."""

    def __init__(
        self, message: str, *, expected: int, actual: int, status: int = 409, code: str | None = None
    ) -> None:
        super().__init__(message, code=code or "409", status=status, position=expected)
        self.expected = expected
        self.actual = actual


class AppendHashMismatch(AppendStreamError):
    """The server's hash of the object differs from the etag of what the stream wrote."""

    def __init__(self, message: str, *, server_hash: str, local_hash: str) -> None:
        super().__init__(message, code="hash-mismatch")
        self.server_hash = server_hash
        self.local_hash = local_hash


class _Credentials:
    """A fixed token, or a key pair minting tokens for ``scope`` (secrets stay in here)."""

    def __init__(
        self, token: str | None, access_key: str | None, secret_key: str | None, scope: str | None, ttl: float
    ) -> None:
        if token:
            try:
                wcs.parse_token(token)
            except ProtocolError as exc:
                raise ValueError(f"open_append: {exc}") from None
        elif not (access_key and secret_key and scope):
            missing = [
                n
                for n, v in (("access_key", access_key), ("secret_key", secret_key), ("scope", scope))
                if not v
            ]
            raise ValueError(
                "open_append needs token=, or access_key= + secret_key= + scope=; missing: "
                + ", ".join(missing)
            )
        if token and not scope:
            scope = _token_scope(token)
        self._token = token
        self._ak = access_key
        self._sk = secret_key
        self.scope = scope
        self._ttl = ttl
        self._cached: tuple[str, float] | None = None

    def current(self) -> str:
        if self._token:
            return self._token
        assert self._ak and self._sk and self.scope
        now = time.time()
        if self._cached is None or self._cached[1] - now < min(300.0, self._ttl / 4):
            deadline = now + self._ttl
            policy = wcs.PutPolicy(scope=self.scope, deadline=int(deadline * 1000))
            self._cached = (wcs.make_token(self._ak, self._sk, policy), deadline)
        return self._cached[0]

    def refresh(self) -> bool:
        """Forget the minted token; False when a fixed token cannot be remade."""
        self._cached = None
        return not self._token

    def __repr__(self) -> str:
        return f"<credentials scope={self.scope!r}>"


def _token_scope(token: str) -> str | None:
    """The scope a token's policy names (unverified: only the server knows the secret)."""
    try:
        _, _, encoded = wcs.parse_token(token)
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        return wcs.PutPolicy.from_obj(json.loads(raw.decode("utf-8"))).scope
    except (ProtocolError, ValueError, UnicodeDecodeError):
        return None


def _hash_prefix(prefix: Any, length: int) -> wcs.EtagHasher:
    """The etag state of the object's first ``length`` bytes, read from a local copy."""
    hasher = wcs.EtagHasher()
    if isinstance(prefix, (bytes, bytearray, memoryview)):
        view = memoryview(prefix).cast("B")
        if view.nbytes < length:
            raise ValueError(f"prefix= holds {view.nbytes} bytes; the object already has {length}")
        hasher.update(view[:length])
        return hasher
    with open(os.fspath(prefix), "rb") as f:
        left = length
        while left:
            data = f.read(min(_HASH_READ, left))
            if not data:
                raise ValueError(
                    f"prefix= file {os.fspath(prefix)!r} is shorter than the object's {length} bytes"
                )
            hasher.update(data)
            left -= len(data)
    return hasher


class _Sender:
    """The network side: one append at a time, B5 recovery, retries. Holds no reference to
    the writer, so a writer dropped without ``close()`` is still collected (and closed)."""

    def __init__(
        self,
        url: str,
        creds: _Credentials,
        key: str | None,
        *,
        mime: str | None,
        filename: str,
        variables: Mapping[str, str] | None,
        timeout: float,
        retries: int,
        retry_deadline: float,
        backoff_base: float,
        backoff_cap: float,
        verify: bool | str,
    ) -> None:
        self.base = url.rstrip("/")
        self.creds = creds
        self.key = key
        self.mime = mime
        self.filename = filename
        self.variables = dict(variables or {})
        self.retries = retries
        self.retry_deadline = retry_deadline
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stop = threading.Event()
        from ._version import __version__

        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            follow_redirects=False,
            verify=verify,
            headers={"User-Agent": f"nbupload/{__version__} (append stream)"},
        )
        self.appends = 0
        self.replays = 0

    def _post(self, position: int, data: bytes) -> wcs.AppendAnswer:
        body = wcs.prepare_append(
            self.creds.current(),
            BytesSource(data),
            0,
            len(data),
            key=self.key,
            mime=self.mime,
            variables=self.variables,
            filename=self.filename,
        )
        with self.client.stream(
            "POST", self.base + wcs.append_path(position), content=iter(body), headers=body.headers
        ) as resp:
            raw = bytearray()
            for part in resp.iter_bytes():
                raw += part
                if len(raw) > _MAX_ANSWER:
                    break
            return wcs.process_append_answer(resp.status_code, resp.headers.multi_items(), bytes(raw))

    def _fail(self, answer: wcs.AppendAnswer, position: int) -> AppendStreamError:
        if answer.status == 409 and answer.object_type == "Normal":
            return AppendStreamError(
                f"{self._name()} exists and is not appendable (x-wcs-object-type: Normal)",
                code=answer.code or "409",
                status=409,
                position=position,
            )
        return AppendStreamError(
            f"append at {position} to {self._name()} failed: {answer.describe()}",
            code=answer.code or str(answer.status),
            status=answer.status,
            position=position,
        )

    def _name(self) -> str:
        bucket = (self.creds.scope or "").partition(":")[0]
        return f"{bucket}/{self.key}" if bucket and self.key else repr(self.creds.scope or self.key)

    def _sleep(self, failures: int, start: float, why: str, position: int) -> None:
        """Back off before the next try, or raise when the retries are used up."""
        delay = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (failures - 1)))
        if failures > self.retries or time.monotonic() + delay - start > self.retry_deadline:
            raise AppendStreamError(
                f"append at {position} to {self._name()} failed after {failures} tries: {why}",
                code="retries-exhausted",
                position=position,
            )
        self.stop.wait(delay)

    def append(self, position: int, data: bytes) -> wcs.AppendAnswer:
        """Append ``data`` at ``position`` until the server holds it exactly once.

        Returns the answer that settled it: a success (carrying the object's hash) or a
        409 that proves an earlier, unanswered try had landed (no hash).
        """
        failures = 0
        start = time.monotonic()
        ambiguous = False  # an earlier try may have landed without our hearing of it
        refreshed = False
        while True:
            try:
                answer = self._post(position, data)
            except httpx.HTTPError as exc:
                ambiguous = True
                failures += 1
                self.replays += 1
                self._sleep(failures, start, f"{type(exc).__name__}: {exc}", position)
                continue
            self.appends += 1
            if answer.ok:
                if answer.next_position is not None and answer.next_position != position + len(data):
                    raise AppendConflict(
                        f"after appending {len(data)} bytes at {position} the server says {self._name()} has "
                        f"{answer.next_position} bytes: someone else is appending to it",
                        expected=position + len(data),
                        actual=answer.next_position,
                        status=answer.status,
                    )
                return answer
            if answer.status == 409 and answer.object_type != "Normal" and answer.next_position is not None:
                verdict = wcs.judge_replay(position, len(data), answer)
                if ambiguous and verdict.landed:
                    return answer
                raise AppendConflict(
                    f"conflict: this stream expected {self._name()} at {position} bytes but the server has "
                    f"{answer.next_position}; someone else appended (nothing was overwritten)",
                    expected=position,
                    actual=answer.next_position,
                    code=answer.code,
                )
            if answer.status == 401 and not refreshed and self.creds.refresh():
                refreshed = True
                continue
            if answer.status in _RETRY_STATUS or answer.status >= 500:
                failures += 1
                self._sleep(failures, start, answer.describe(), position)
                continue
            raise self._fail(answer, position)

    def size(self) -> int:
        """The object's current size (0 when it does not exist), appending nothing."""
        failures = 0
        start = time.monotonic()
        while True:
            try:
                answer = self._post(_PROBE_POSITION, b"")
            except httpx.HTTPError as exc:
                failures += 1
                self._sleep(failures, start, f"{type(exc).__name__}: {exc}", 0)
                continue
            if answer.status == 409 and answer.object_type != "Normal" and answer.next_position is not None:
                return answer.next_position
            if answer.status in _RETRY_STATUS:
                failures += 1
                self._sleep(failures, start, answer.describe(), 0)
                continue
            if answer.ok:  # a server that took an append at an impossible position
                raise AppendStreamError(
                    f"the server accepted an append at position {_PROBE_POSITION}; give position= explicitly",
                    code="probe",
                    status=answer.status,
                )
            raise self._fail(answer, 0)

    def close(self) -> None:
        self.stop.set()
        self.client.close()


class AppendStream(io.BufferedIOBase):
    """A binary writer appending to one WCS object; see :func:`open_append`.

    After ``close()``: ``position`` is the object's size, ``hash`` the server's etag of it,
    ``local_hash`` the etag of the bytes this stream knows (``None`` when it started at a
    position > 0 without ``prefix=``), and ``verified`` whether the two were compared.
    """

    def __init__(
        self,
        sender: _Sender,
        position: int,
        hasher: wcs.EtagHasher | None,
        *,
        flush_size: int,
        interval: float,
        max_buffer: int,
        max_append: int,
    ) -> None:
        super().__init__()
        self._sender = sender
        self._cond = threading.Condition()
        self.start = position
        self.position = position
        self.hash: str | None = None
        self.local_hash: str | None = None
        self.verified = False
        self._shared = _Shared(
            position, hasher, flush_size=flush_size, interval=interval, max_append=max_append
        )
        self._max_buffer = max(max_buffer, flush_size)
        # The thread gets the sender and the shared record, never the writer itself.
        self._thread = threading.Thread(
            target=_run_sender, args=(sender, self._cond, self._shared), name="nbupload-append", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<AppendStream {self._sender._name()} at {self.position} ({state})>"

    # -- io.BufferedIOBase -------------------------------------------------------------
    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def _raise_if_failed(self) -> None:
        err = self._shared.error
        if err is not None:
            err.unsent = self._shared.written - self._shared.acked
            raise err

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed append stream")
        view = memoryview(data).cast("B")
        total = view.nbytes
        s = self._shared
        with self._cond:
            while view.nbytes:
                self._raise_if_failed()
                room = self._max_buffer - len(s.pending)
                if room <= 0:
                    self._cond.wait()
                    continue
                take = view[:room]
                if not s.pending:
                    s.pending_since = time.monotonic()
                s.pending += take
                s.written += take.nbytes
                view = view[take.nbytes :]
                self._cond.notify_all()
            self._raise_if_failed()
        return total

    def flush(self) -> None:
        """Send everything written so far and wait until the server holds it."""
        if self.closed:
            return
        self._drain()

    def _drain(self) -> None:
        s = self._shared
        with self._cond:
            self._raise_if_failed()
            target = s.written
            s.flush_to = max(s.flush_to, target)
            self._cond.notify_all()
            while s.acked < target and s.error is None:
                self._cond.wait()
            self._raise_if_failed()
        self.position = self.start + s.acked

    def close(self) -> None:
        """Send what is buffered, verify the object's hash, stop the sender.

        Raises the stream's failure, if any (the stream is closed all the same).
        """
        if self.closed:
            return
        try:
            self._drain()
            self._verify()
        finally:
            with self._cond:
                self._shared.closing = True
                self._cond.notify_all()
            self._sender.stop.set()
            if threading.current_thread() is not self._thread:
                self._thread.join(10)
            self._sender.close()
            super().close()

    def _verify(self) -> None:
        s = self._shared
        self.position = self.start + s.acked
        if s.acked == 0 and s.last_hash is None:
            return  # nothing written: nothing to compare
        server = s.last_hash
        if server is None:  # the last answer was lost (its append had landed): ask again
            answer = self._sender.append(self.position, b"")
            server = answer.hash
        self.hash = server
        if s.hasher is None:
            return
        self.local_hash = s.hasher.etag()
        if server is None:
            return
        if server != self.local_hash:
            raise AppendHashMismatch(
                f"hash mismatch: the server's {self._sender._name()} has etag {server}, the bytes written "
                f"have {self.local_hash}",
                server_hash=server,
                local_hash=self.local_hash,
            )
        self.verified = True

    def server_hash(self) -> str | None:
        """Send what is buffered, then ask the server for the object's etag now (an empty
        append at the end, B3). ``None`` when the server answers none."""
        self._drain()
        return self._sender.append(self.position, b"").hash

    @property
    def unsent(self) -> int:
        """Bytes written that the server does not hold yet."""
        return self._shared.written - self._shared.acked

    @property
    def stats(self) -> dict[str, int]:
        """Bytes written and acknowledged, appends sent, tries repeated after a lost answer."""
        s = self._shared
        return {
            "written": s.written,
            "acked": s.acked,
            "appends": self._sender.appends,
            "replays": self._sender.replays,
        }


class _Shared:
    """State shared by the writer and the sender thread (guarded by the writer's condition)."""

    def __init__(
        self,
        position: int,
        hasher: wcs.EtagHasher | None,
        *,
        flush_size: int,
        interval: float,
        max_append: int,
    ) -> None:
        self.pending = bytearray()
        self.pending_since = 0.0
        self.written = 0  # bytes accepted by write()
        self.acked = 0  # bytes the server holds
        self.flush_to = 0  # the sender drains until what it took reaches this
        self.closing = False
        self.error: AppendStreamError | None = None
        self.position = position
        self.hasher = hasher
        self.last_hash: str | None = None
        self.flush_size = flush_size
        self.interval = interval
        self.max_append = max_append


def _run_sender(sender: _Sender, cond: threading.Condition, s: _Shared) -> None:
    while True:
        with cond:
            while True:
                if s.closing or s.error is not None:
                    return
                if s.pending:
                    wanted = s.written - len(s.pending) < s.flush_to
                    waited = time.monotonic() - s.pending_since
                    if wanted or len(s.pending) >= s.flush_size or waited >= s.interval:
                        break
                    cond.wait(s.interval - waited)
                else:
                    cond.wait()
            data = bytes(s.pending[: s.max_append])
            del s.pending[: len(data)]
            s.pending_since = time.monotonic()
            cond.notify_all()  # room in the buffer for blocked writers
            position = s.position
        try:
            answer = sender.append(position, data)
        except AppendStreamError as exc:
            error: AppendStreamError | None = exc
        except Exception as exc:  # noqa: BLE001 - never let the thread die silently
            error = AppendStreamError(
                f"append at {position} failed: {type(exc).__name__}: {exc}", position=position
            )
        else:
            error = None
        with cond:
            if error is not None:
                s.error = error
            else:
                s.position += len(data)
                s.acked += len(data)
                s.last_hash = answer.hash if answer.ok else None
                if s.hasher is not None:
                    s.hasher.update(data)
            cond.notify_all()
            if error is not None:
                return


def open_append(
    url: str,
    *,
    key: str | None = None,
    token: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    scope: str | None = None,
    position: int | None = None,
    prefix: Any = None,
    flush_size: int = 256 << 10,
    interval: float = 2.0,
    max_buffer: int = 8 << 20,
    max_append: int = 4 << 20,
    mime: str | None = None,
    filename: str = "append",
    variables: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    retries: int = 8,
    retry_deadline: float = 300.0,
    backoff_base: float = 0.2,
    backoff_cap: float = 10.0,
    token_ttl: float = 3600.0,
    verify: bool | str = True,
) -> AppendStream:
    """Open a WCS appendable object as a binary writer.

    ``url`` is the upload domain (the stream posts to ``<url>/append/<position>``); the
    object is ``bucket:key`` from the token's or ``scope``'s bucket and ``key``. Credentials
    are ``token=`` or ``access_key=`` + ``secret_key=`` + ``scope=`` (tokens are then minted
    and remade before they expire).

    The stream starts at the object's current size, found by an empty append at an
    impossible position (the 409 answer carries the size; nothing changes), or at
    ``position=`` when given (a wrong one fails the first append with
    :class:`AppendConflict`). Bytes go out as one append when ``flush_size`` are buffered,
    when the oldest has waited ``interval`` seconds, or on ``flush()``; one append carries at
    most ``max_append`` bytes and ``write`` waits while ``max_buffer`` bytes are unsent.

    Hash check on ``close()``: when the stream starts at 0 the server's etag of the object is
    compared with the etag of everything written. When it starts at a position > 0, nothing
    is fetched from the server: give ``prefix=`` (a path or bytes holding the object's first
    ``position`` bytes, e.g. the local file a log is appended from) to have the comparison
    made (and checked at once: an empty append returns the object's hash, which must be the
    prefix's, else :class:`AppendHashMismatch` and nothing is appended); without it
    ``verified`` stays ``False`` and only the server's ``hash`` is kept.

    ``with nbupload.open_append(url, key="run.log", token=tok) as w: w.write(b"...")``;
    text: ``io.TextIOWrapper(w, encoding="utf-8", write_through=True)``.
    """
    if flush_size < 1 or max_append < 1 or max_buffer < 1:
        raise ValueError("flush_size, max_append and max_buffer must be positive")
    if interval <= 0:
        raise ValueError("interval must be positive (seconds)")
    if position is not None and position < 0:
        raise ValueError("position must not be negative")
    creds = _Credentials(token, access_key, secret_key, scope, token_ttl)
    if not key and not (creds.scope and ":" in creds.scope):
        raise ValueError("open_append needs key= (or a scope naming bucket:key)")
    sender = _Sender(
        url,
        creds,
        key,
        mime=mime,
        filename=filename,
        variables=variables,
        timeout=timeout,
        retries=retries,
        retry_deadline=retry_deadline,
        backoff_base=backoff_base,
        backoff_cap=backoff_cap,
        verify=verify,
    )
    try:
        start = sender.size() if position is None else position
        hasher: wcs.EtagHasher | None
        if start == 0:
            hasher = wcs.EtagHasher()
        elif prefix is not None:
            hasher = _hash_prefix(prefix, start)
            # An empty append at the start returns the object's hash: the prefix must be its bytes.
            held = sender.append(start, b"").hash
            if held is not None and held != hasher.etag():
                raise AppendHashMismatch(
                    f"prefix= is not what {sender._name()} holds: its first {start} bytes have etag "
                    f"{hasher.etag()}, the object {held}; nothing was appended",
                    server_hash=held,
                    local_hash=hasher.etag(),
                )
        else:
            hasher = None
    except BaseException:
        sender.close()
        raise
    return AppendStream(
        sender,
        start,
        hasher,
        flush_size=flush_size,
        interval=interval,
        max_buffer=max_buffer,
        max_append=max_append,
    )


class AppendHandler(logging.Handler):
    """A ``logging`` handler writing each record as one line to a WCS appendable object.

    ``AppendHandler(url, key="train.log", token=tok)`` takes :func:`open_append`'s options
    (``interval`` 2 s by default: a quiet log costs one request per interval at most). A
    failed append goes through ``handleError`` (a message on stderr; logging never raises
    into the program) and the handler stops sending; ``handler.stream.unsent`` tells how
    much was lost, ``dropped`` how many records were not sent. ``close()`` (or
    ``logging.shutdown()`` at exit) sends the rest.
    """

    def __init__(
        self, url: str, *, level: int = logging.NOTSET, encoding: str = "utf-8", **options: Any
    ) -> None:
        super().__init__(level)
        self.encoding = encoding
        self.dropped = 0  # records not sent because the stream had failed
        self.stream = open_append(url, **options)

    def emit(self, record: logging.LogRecord) -> None:
        if self.dropped:  # the stream failed: reported once, then records are counted
            self.dropped += 1
            return
        try:
            line = self.format(record) + "\n"
            self.stream.write(line.encode(self.encoding, "replace"))
        except Exception:  # noqa: BLE001 - logging must never raise into the program
            self.dropped += 1
            self.handleError(record)

    def flush(self) -> None:
        self.acquire()
        try:
            if not self.stream.closed and not self.dropped:
                self.stream.flush()
        finally:
            self.release()

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            super().close()
