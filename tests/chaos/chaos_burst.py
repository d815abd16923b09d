"""An HTTP-aware front that answers bursts of 5xx and cuts answers mid-way, for the campaign.

``tests/support/proxy.py`` misbehaves at the TCP level (cuts, swallowed answers, stalls,
slowness). A 5xx burst needs a real HTTP answer from "the server" without the server ever
seeing the request, so this front parses request and response framing (Content-Length,
which the engine and uvicorn always send) and, while a burst is armed, answers the next
requests itself: ``503`` (or another 5xx) with or without ``Retry-After``, then closes.
Armed with :meth:`BurstFront.cut_answer`, it forwards a request and then resets the
connection after a given number of bytes of the server's answer (server-to-client reset
at a random offset: the server has applied the request, the client hears part of it).
Everything else is passed through byte for byte, keep-alive included.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.front import LoopbackFront, content_length, header, read_head, relay, shutdown_and_close

__all__ = ["Burst", "BurstFront"]


@dataclass(frozen=True)
class Burst:
    status: int = 503
    retry_after: str | None = None


_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _content_length(head: bytes) -> int | None:
    """The body length ``head`` announces; ``None`` for a chunked body (no length to relay by)."""
    if not header(head, b"content-length") and header(head, b"transfer-encoding"):
        return None
    return content_length(head)


class BurstFront(LoopbackFront):
    """``front = BurstFront(("127.0.0.1", port)); front.arm(3, Burst(503, "1"))``."""

    thread_name = "burst-front"

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._bursts: deque[Burst] = deque()
        self._cuts: deque[int] = deque()
        self.answers_cut = 0
        self.forwarded = 0  # request bytes passed on to the server, all connections
        self._triggers: list[tuple[int, Callable[[], None]]] = []
        self.injected: list[Burst] = []
        super().__init__()

    def arm(self, count: int, burst: Burst) -> None:
        """The next ``count`` requests get ``burst`` instead of reaching the server."""
        with self._lock:
            self._bursts.extend([burst] * count)

    def at_bytes(self, threshold: int, action: Callable[[], None]) -> None:
        """Run ``action`` once :attr:`forwarded` reaches ``threshold``, in the forwarding
        thread, before another byte of that request goes on: a fault lands at an exact point
        of the upload, whatever the speed of the machine."""
        with self._lock:
            self._triggers.append((threshold, action))
            self._triggers.sort(key=lambda t: t[0])

    def clear(self) -> None:
        """Forget armed bursts, cuts and triggers (the end of a run)."""
        with self._lock:
            self._bursts.clear()
            self._cuts.clear()
            self._triggers.clear()

    def _count(self, n: int) -> None:
        due = []
        with self._lock:
            self.forwarded += n
            while self._triggers and self.forwarded >= self._triggers[0][0]:
                due.append(self._triggers.pop(0)[1])
        for action in due:
            action()

    def cut_answer(self, *offsets: int) -> None:
        """The answers to the next requests are reset after ``offsets[i]`` bytes each."""
        with self._lock:
            self._cuts.extend(offsets)

    def _take_cut(self) -> int | None:
        with self._lock:
            if self._cuts:
                self.answers_cut += 1
                return self._cuts.popleft()
            return None

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._bursts)

    def _take(self) -> Burst | None:
        with self._lock:
            if self._bursts:
                burst = self._bursts.popleft()
                self.injected.append(burst)
                return burst
            return None

    def _handle(self, client: socket.socket) -> None:
        self.track(client)
        threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        cbuf, ubuf = bytearray(), bytearray()
        try:
            while not self._stop.is_set():
                head = read_head(client, cbuf, limit=1 << 20)
                if head is None:
                    return
                length = _content_length(head)
                self._count(0)  # a trigger at 0 bytes fires before the first request
                burst = self._take()
                if burst is not None:
                    if length is not None:
                        relay(client, _Sink(), cbuf, length)
                    self._answer(client, burst)
                    return
                if upstream is None:
                    upstream = socket.create_connection(self.target, timeout=30)
                    self.track(upstream)
                upstream.sendall(head)
                self._count(len(head))
                if length is None:  # chunked: no framing help, just pipe from here on
                    self._pipe(client, upstream, cbuf)
                    return
                if not relay(client, upstream, cbuf, length, count=self._count):
                    return
                rhead = read_head(upstream, ubuf, limit=1 << 20)
                if rhead is None:
                    return
                cut = self._take_cut()
                if cut is not None:  # forward the first `cut` bytes of the answer, then reset
                    client.sendall((rhead + bytes(ubuf))[:cut])
                    client.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    return
                client.sendall(rhead)
                rlength = _content_length(rhead)
                if rlength is None:
                    self._pipe(upstream, client, ubuf)
                    return
                if not relay(upstream, client, ubuf, rlength):
                    return
        except OSError:
            return
        finally:
            for s in (client, upstream):
                if s is not None:
                    shutdown_and_close(s)

    @staticmethod
    def _answer(client: socket.socket, burst: Burst) -> None:
        body = b'{"result":"ERROR","code":%d,"message":"injected by the fault campaign"}' % burst.status
        lines = [
            f"HTTP/1.1 {burst.status} {_REASONS.get(burst.status, 'Error')}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        if burst.retry_after is not None:
            lines.append(f"Retry-After: {burst.retry_after}")
        client.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def _pipe(self, a: socket.socket, b: socket.socket, buf: bytearray) -> None:
        if buf:
            b.sendall(bytes(buf))
        back = threading.Thread(target=_copy, args=(b, a), daemon=True)
        back.start()
        _copy(a, b)
        back.join(5)


class _Sink:
    def sendall(self, data: bytes) -> None:
        pass


def _copy(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        shutdown_and_close(dst)
