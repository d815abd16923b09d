"""A small TCP proxy that misbehaves on purpose, for the engine's fault tests.

Each new client connection takes the next queued :class:`Fault` (or the default one) and
forwards bytes to the target (or, with several ``upstreams``, to each in turn: one server
spread over processes), except that it can cut the connection after N bytes from
the client, stall, throttle, or swallow the server's answer once the server has sent it
(so the server *applied* the request but the client never hears about it).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace

from .front import LoopbackFront, shutdown_and_close

__all__ = ["Fault", "FaultProxy"]


@dataclass
class Fault:
    """What goes wrong on one connection. Byte counts are client-to-server bytes."""

    cut_after: int | None = None  # close both sides once this many bytes went upstream
    swallow_after: int | None = None  # after this many bytes upstream, drop the next answer and close
    stall_after: int | None = None  # after this many bytes upstream, forward nothing for stall_for s
    stall_for: float = 0.0
    rate: float | None = None  # upstream bytes per second
    delay: float = 0.0  # before forwarding each answer piece


@dataclass
class _Counters:
    connections: int = 0
    up: int = 0
    down: int = 0
    cuts: int = 0
    swallowed: int = 0
    stalls: int = 0
    faults_used: list[Fault] = field(default_factory=list)


class FaultProxy(LoopbackFront):
    """``with FaultProxy(host, port) as proxy: proxy.url``."""

    thread_name = "fault-proxy"

    def __init__(self, target_host: str, target_port: int, default: Fault | None = None) -> None:
        self.target = (target_host, target_port)
        #: When set, new connections go to these in turn (round robin) instead of ``target``.
        self.upstreams: list[tuple[str, int]] | None = None
        self.default = default or Fault()
        #: When set, every connection whose fault has no ``rate`` of its own is paced at this
        #: (a slow link under the faults: a queued fault would otherwise run at loopback speed)
        self.pace: float | None = None
        self._queue: deque[Fault] = deque()
        self.counters = _Counters()
        super().__init__()

    @classmethod
    def for_url(cls, url: str, default: Fault | None = None) -> FaultProxy:
        import httpx

        u = httpx.URL(url)
        return cls(u.host, u.port or 80, default)

    def add(self, *faults: Fault) -> None:
        """Faults for the next connections, in order."""
        with self._lock:
            self._queue.extend(faults)

    def clear(self) -> None:
        """Forget faults queued for connections that never came."""
        with self._lock:
            self._queue.clear()

    def _next_fault(self) -> tuple[Fault, tuple[str, int]]:
        with self._lock:
            self.counters.connections += 1
            fault = self._queue.popleft() if self._queue else self.default
            if self.pace is not None and fault.rate is None:
                fault = replace(fault, rate=self.pace)
            self.counters.faults_used.append(fault)
            ups = self.upstreams
            target = ups[(self.counters.connections - 1) % len(ups)] if ups else self.target
            return fault, target

    def _handle(self, client: socket.socket) -> None:
        fault, target = self._next_fault()
        try:
            upstream = socket.create_connection(target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        client.settimeout(None)
        self.track(client, upstream)
        conn = _Connection(self, client, upstream, fault)
        threading.Thread(target=conn.pump_up, daemon=True).start()
        threading.Thread(target=conn.pump_down, daemon=True).start()


class _Connection:
    def __init__(
        self, proxy: FaultProxy, client: socket.socket, upstream: socket.socket, fault: Fault
    ) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.fault = fault
        self.up = 0
        self.armed = False  # the next answer is to be swallowed
        self.dead = threading.Event()

    def _close(self) -> None:
        self.dead.set()
        shutdown_and_close(self.client)
        shutdown_and_close(self.upstream)

    def pump_up(self) -> None:
        f = self.fault
        stalled = False
        try:
            while not self.dead.is_set():
                data = self.client.recv(65536)
                if not data:
                    self.upstream.shutdown(socket.SHUT_WR)
                    return
                if f.cut_after is not None and self.up + len(data) >= f.cut_after:
                    keep = f.cut_after - self.up
                    if keep > 0:
                        self.upstream.sendall(data[:keep])
                    self.up += max(keep, 0)
                    with self.proxy._lock:
                        self.proxy.counters.cuts += 1
                    self._close()
                    return
                if f.stall_after is not None and not stalled and self.up + len(data) >= f.stall_after:
                    stalled = True
                    with self.proxy._lock:
                        self.proxy.counters.stalls += 1
                    self.dead.wait(f.stall_for)
                if f.rate:
                    time.sleep(len(data) / f.rate)
                if f.swallow_after is not None and self.up + len(data) >= f.swallow_after:
                    self.armed = True  # before sending: the answer may come back at once
                self.upstream.sendall(data)
                self.up += len(data)
                with self.proxy._lock:
                    self.proxy.counters.up += len(data)
        except OSError:
            self._close()

    def pump_down(self) -> None:
        f = self.fault
        try:
            while not self.dead.is_set():
                data = self.upstream.recv(65536)
                if not data:
                    self._close()
                    return
                if self.armed:
                    with self.proxy._lock:
                        self.proxy.counters.swallowed += 1
                    self.fault = Fault()  # once
                    self._close()
                    return
                if f.delay:
                    time.sleep(f.delay)
                self.client.sendall(data)
                with self.proxy._lock:
                    self.proxy.counters.down += len(data)
        except OSError:
            self._close()
