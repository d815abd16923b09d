"""A lingering close: a refusal sent before the whole request body was read still arrives.

When the app answers a request whose body it has not read to the end (a wrong position, a
bad token, a size over a limit) and says ``Connection: close``, uvicorn closes the socket at
once. Bytes the client is still sending then meet a closed socket, the kernel answers them
with a reset, and a reset makes the client's kernel drop what it had not yet read: the
answer. Clients that send the whole body before reading (the WCS Go SDK sends appends of up
to 2 GiB in one request) never see it.

:class:`LingeringHttpToolsProtocol` closes such a connection as nginx does: it sends the
answer, half-closes (TLS cannot: it just stops writing), and keeps reading and discarding
what comes until the client closes, nothing came for :data:`LINGER_IDLE_SECONDS`,
:data:`LINGER_MAX_SECONDS` passed or :data:`LINGER_MAX_BYTES` were discarded; then it closes.
A client still sending at :data:`LINGER_MIN_RATE` or faster on average when the time is up is
given more time (a 2 GiB append over a 100 Mbit/s link takes minutes), up to the byte bound.
Bounded in time and bytes, costing no memory (discarded bytes are only counted), so it
cannot be used to tie the server up.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "LINGER_IDLE_SECONDS",
    "LINGER_MAX_BYTES",
    "LINGER_MAX_SECONDS",
    "LINGER_MIN_RATE",
    "LingeringHttpToolsProtocol",
]

#: nginx's lingering_time and lingering_timeout are 30 s and 5 s.
LINGER_MAX_SECONDS = 30.0
LINGER_IDLE_SECONDS = 5.0
LINGER_MAX_BYTES = 4 << 30
#: bytes per second, on average since the answer, that earn a slow-but-honest sender more time
LINGER_MIN_RATE = 1 << 20


class _Transport:
    """The connection's transport as the request cycle sees it: ``close`` may linger."""

    def __init__(self, protocol: LingeringHttpToolsProtocol, transport: asyncio.Transport) -> None:
        self._protocol = protocol
        self._transport = transport

    def close(self) -> None:
        self._protocol.close_or_linger()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class LingeringHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a lingering close after an early answer."""

    _real: asyncio.Transport | None = None
    _lingering = False
    _discarded = 0
    _idle: asyncio.TimerHandle | None = None
    _limit: asyncio.TimerHandle | None = None
    _started = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._real = transport
        super().connection_made(_Transport(self, transport))  # type: ignore[arg-type]

    def _body_unread(self) -> bool:
        cycle = self.cycle
        return cycle is not None and cycle.more_body and not cycle.disconnected

    def close_or_linger(self) -> None:
        """Close now, unless an answer went out while the request body is still coming."""
        real = self._real
        assert real is not None
        if self._lingering:
            return  # our own timers and the body's end decide
        if real.is_closing() or not self._body_unread():
            real.close()
            return
        self._lingering = True
        if real.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                real.write_eof()  # the answer is queued before the FIN: the client reads it, then EOF
        self.flow.resume_reading()
        self._started = self.loop.time()
        self._limit = self.loop.call_later(LINGER_MAX_SECONDS, self._time_up)
        self._idle = self.loop.call_later(LINGER_IDLE_SECONDS, self._end_linger)

    def _time_up(self) -> None:
        elapsed = self.loop.time() - self._started
        if self._discarded >= LINGER_MIN_RATE * elapsed:  # still coming fast: its answer is worth it
            self._limit = self.loop.call_later(LINGER_MAX_SECONDS, self._time_up)
            return
        self._end_linger()

    def _end_linger(self) -> None:
        for timer in (self._idle, self._limit):
            if timer is not None:
                timer.cancel()
        self._idle = self._limit = None
        if self._real is not None and not self._real.is_closing():
            self._real.close()

    def data_received(self, data: bytes) -> None:
        if not self._lingering:
            super().data_received(data)
            return
        self._discarded += len(data)
        if self._discarded > LINGER_MAX_BYTES:
            self._end_linger()
            return
        if self._idle is not None:
            self._idle.cancel()
            self._idle = self.loop.call_later(LINGER_IDLE_SECONDS, self._end_linger)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        if self._lingering:
            self._end_linger()  # the client is done sending: close now
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._idle, self._limit):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self._lingering:
            self._end_linger()
        else:
            super().shutdown()
