"""Reading an ASGI request body under the server's limits and throttle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .http import header

if TYPE_CHECKING:
    from .config import ServerConfig

__all__ = ["BodyCutShort", "BodyReader", "BodyTimedOut", "BodyTooLarge", "Throttle", "request_body"]

Receive = Callable[[], Awaitable[dict[str, Any]]]

#: After an error a little more of the body is read and discarded before answering, so a
#: small request's connection stays usable; beyond this many bytes or seconds the server
#: answers at once with ``Connection: close`` and the HTTP layer's lingering close
#: (:mod:`.linger`) reads and discards the rest while the answer reaches the client.
DRAIN_MAX_BYTES = 1024 * 1024
DRAIN_MAX_SECONDS = 1.0
#: The default of ``ServerConfig.body_timeout``: a body that sends no byte for this long is
#: given up as cut short: its client has gone but its connection lingers (a dead link, a lost
#: FIN), and a WCS append would hold its object's lock, a chunk its session, for as long
#: (nginx's client_body_timeout is 60 s too).
BODY_IDLE_TIMEOUT = 60.0


class BodyCutShort(Exception):
    """The client went away before the end of the body."""


class BodyTimedOut(BodyCutShort):
    """No byte of the body came for the idle timeout: answered 408 where the protocol has no
    code of its own for it (WCS), so that a client that is only slow, not gone, tries again
    instead of taking it for a refusal."""


class BodyTooLarge(Exception):
    """The body grew past the per-request limit."""


class Throttle:
    """A shared pace for all request bodies: ``rate`` bytes per second in total."""

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self._next = 0.0

    async def consume(self, n: int) -> None:
        now = time.monotonic()
        self._next = max(self._next, now) + n / self.rate
        delay = self._next - now
        if delay > 0.001:
            await asyncio.sleep(delay)


class BodyReader:
    """Pull body pieces from ASGI ``receive``: counts, enforces ``limit``, paces by ``throttle``."""

    def __init__(
        self,
        receive: Receive,
        limit: int | None = None,
        throttle: Throttle | None = None,
        *,
        expect_continue: bool = False,
        idle_timeout: float = BODY_IDLE_TIMEOUT,
    ) -> None:
        self._receive = receive
        self.idle_timeout = idle_timeout
        self.expect_continue = expect_continue
        self.limit = limit
        self.throttle = throttle
        self.received = 0
        self.done = False
        self.disconnected = False

    async def read(self) -> bytes | None:
        """The next piece (possibly empty), or ``None`` once the body is complete."""
        if self.done:
            return None
        try:
            message = await asyncio.wait_for(self._receive(), self.idle_timeout)
        except asyncio.TimeoutError:
            self.disconnected = True
            self.done = True
            raise BodyTimedOut(f"no byte of the request body came for {self.idle_timeout:g} s") from None
        if message["type"] == "http.disconnect":
            self.disconnected = True
            self.done = True
            raise BodyCutShort("the client closed the connection before the end of the body")
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            self.done = True
        self.received += len(body)
        if self.limit is not None and self.received > self.limit:
            raise BodyTooLarge(f"request body exceeds {self.limit} bytes")
        if self.throttle is not None and body:
            await self.throttle.consume(len(body))
        return body

    async def read_all(self, cap: int) -> bytes:
        """A small body in full (queries); :class:`BodyTooLarge` past ``cap`` bytes."""
        pieces: list[bytes] = []
        size = 0
        while (piece := await self.read()) is not None:
            size += len(piece)
            if size > cap:
                raise BodyTooLarge(f"body exceeds {cap} bytes")
            pieces.append(piece)
        return b"".join(pieces)

    async def drain(self) -> bool:
        """Discard the rest of the body (bounded); whether the whole body was read."""
        if self.done:
            return not self.disconnected
        if self.expect_continue and self.received == 0:
            # "Expect: 100-continue" and nothing read yet: the server answers before asking
            # for the body, so the client never sends it; the connection closes after.
            return False
        limit, self.limit = self.limit, None
        throttle, self.throttle = self.throttle, None
        start = self.received

        async def _discard() -> bool:
            while self.received - start <= DRAIN_MAX_BYTES:
                if await self.read() is None:
                    return True
            return False

        try:
            # wait_for rather than asyncio.timeout: Python 3.10 is supported.
            return await asyncio.wait_for(_discard(), DRAIN_MAX_SECONDS)
        except (BodyCutShort, asyncio.TimeoutError):
            return False
        finally:
            self.limit, self.throttle = limit, throttle


def request_body(
    scope: dict[str, Any], receive: Receive, config: ServerConfig, throttle: Throttle | None
) -> BodyReader:
    """This request's body under the server's limits; answers ``Expect: 100-continue``."""
    expect = (header(scope, "expect") or "").strip().lower() == "100-continue"
    return BodyReader(
        receive, config.max_request_size, throttle, expect_continue=expect, idle_timeout=config.body_timeout
    )
