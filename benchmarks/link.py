"""A userspace link emulator: a TCP front that makes loopback look like a network link.

This machine's kernel has no ``netem``, so the link scenarios put this front between a
client and the server. For every accepted connection it opens its own connection to the
server and relays bytes both ways, shaping them as a link would:

- **pacing** (upstream only, client to server): each connection's bytes leave at most at
  ``flow_rate`` bytes/s, and all connections together at most at ``shared_rate`` (one
  token bucket shared by every connection, a bottleneck all flows compete for). Pacing is
  strict (no burst credit is saved while a flow is idle) and happens in slices of about
  2 ms of the rate, so the rate holds at millisecond scale;
- **delay**: upstream bytes reach the server ``up_delay`` seconds after they left the
  client's side of the link, downstream bytes reach the client ``down_delay`` seconds after
  the server sent them, so a request's answer arrives ``up_delay + down_delay`` (the round
  trip) after its last byte left; ``down_delay`` alone is "the server answers late";
- **handshake**: a new connection's first upstream byte is held back ``handshake`` seconds
  (a real connect costs one round trip before the client may send), so clients that open
  a connection per request pay for it as they would on a real link.

Backpressure is kept: a reader thread takes at most one slice at a time from its socket,
waits for the pacer, then queues the slice on a delay line bounded to about twice the
bandwidth-delay product, and a writer thread delivers each slice when it is due. On a
paced link the emulator's receive buffer is held to about 50 ms of the rate (a bottleneck
queue), so the sender's window, and with it the sender's own send buffer, stay as small as
a real slow path would keep them. End of stream and resets travel behind the bytes in
flight, as on a wire.

What it does not model (``netem`` and a real path would): loss and retransmission, TCP
slow start and congestion windows (a new flow gets its full rate at once), jitter, reordering,
and a downstream rate limit (answers are small here). Loopback's large windows mean a
single flow is never window-limited. See docs/benchmarks.md ("Link scenarios").

``python -m benchmarks.link --upstream HOST:PORT [--flow-rate R] [--shared-rate R] [--rtt S]
[--up-delay S] [--down-delay S] [--handshake S]`` prints ``link: serving on http://HOST:PORT``
and runs until SIGTERM or SIGINT. :class:`LinkEmulator` is the same, in this process.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fcntl
import os
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbupload.units import parse_size

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["LinkEmulator", "LinkShape", "Pacer", "main"]

_MAX_SLICE = 256 * 1024
_MIN_SLICE = 16 * 1024
_SLICE_SECONDS = 0.002
_UNPACED_SLICE = 1 << 20
_UNPACED_QUEUE = 8 << 20  # bytes a delay line may hold when nothing paces it
_SPLICE = hasattr(os, "splice")  # Linux, Python 3.10+
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_BURST_SECONDS = 0.004  # a bucket's depth: a reader woken late may catch up this much
_QUEUE_SECONDS = 0.05  # a paced link's receive buffer: about this much of the rate (a bottleneck queue)
_MIN_RCVBUF = 16 * 1024
_MSS = 1448  # Ethernet's segment size, instead of loopback's 64 KiB
_MAX_RCVBUF = 4 << 20


@dataclass(frozen=True)
class LinkShape:
    """What the link does to bytes; all zero/None is a plain relay."""

    flow_rate: float | None = None  # bytes/s per connection, upstream
    shared_rate: float | None = None  # bytes/s over all connections, upstream
    up_delay: float = 0.0  # seconds, client -> server
    down_delay: float = 0.0  # seconds, server -> client
    handshake: float = 0.0  # seconds a new connection waits before its first upstream byte

    @classmethod
    def symmetric(
        cls, rtt: float, *, flow_rate: float | None = None, shared_rate: float | None = None
    ) -> LinkShape:
        """A link with round trip ``rtt``: half each way, and a connect that costs one round trip."""
        return cls(flow_rate, shared_rate, rtt / 2, rtt / 2, rtt)

    def describe(self) -> str:
        parts = []
        if self.flow_rate:
            parts.append(f"{self.flow_rate / 1e6:g} MB/s per flow")
        if self.shared_rate:
            parts.append(f"{self.shared_rate / 1e6:g} MB/s shared")
        if self.up_delay or self.down_delay:
            parts.append(f"delay up {self.up_delay * 1000:g} ms / down {self.down_delay * 1000:g} ms")
        if self.handshake:
            parts.append(f"connect {self.handshake * 1000:g} ms")
        return ", ".join(parts) or "relay"


class Pacer:
    """A token bucket as a virtual clock: ``reserve(n)`` says when n bytes have left.

    Its depth is ``_BURST_SECONDS`` of the rate: a reader that woke late (sleep overshoot,
    a busy machine) may catch up that much, so the mean rate holds, but an idle flow saves
    no more credit than that. Shared by every connection when it models a common
    bottleneck; the lock makes the reservations of concurrent flows queue one behind
    another, which is what a shared link does to them.
    """

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = float(rate)
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self, n: int) -> float:
        """The monotonic time at which ``n`` more bytes will have left."""
        with self._lock:
            start = max(time.monotonic() - _BURST_SECONDS, self._next)
            self._next = start + n / self.rate
            return self._next


def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _slice_size(rates: list[float]) -> int:
    if not rates:
        return _UNPACED_SLICE
    return int(max(_MIN_SLICE, min(_MAX_SLICE, min(rates) * _SLICE_SECONDS)))


class _Direction:
    """One direction of one connection: read, pace, delay, deliver."""

    def __init__(
        self,
        conn: _Connection,
        src: socket.socket,
        dst: socket.socket,
        pacers: list[Pacer],
        delay: float,
        hold: float,
        name: str,
    ) -> None:
        self.conn, self.src, self.dst = conn, src, dst
        self.pacers, self.delay, self.hold, self.name = pacers, delay, hold, name
        self.slice = _slice_size([p.rate for p in pacers])
        rate = min((p.rate for p in pacers), default=0.0)
        # about twice the bandwidth-delay product may be in flight on the delay line
        self.limit = max(4 * self.slice, int(2 * rate * delay)) if rate else _UNPACED_QUEUE
        self.queue: collections.deque[tuple[float, bytes | None, bool]] = collections.deque()
        self.queued = 0
        self.cond = threading.Condition()
        self.bytes = 0

    def start(self) -> None:
        if self.delay > 0:
            threading.Thread(target=self._read_loop, name=f"link-{self.name}-read", daemon=True).start()
            threading.Thread(target=self._write_loop, name=f"link-{self.name}-write", daemon=True).start()
        else:
            threading.Thread(target=self._relay_loop, name=f"link-{self.name}", daemon=True).start()

    # ------------------------------------------------------------------ no delay: one thread
    def _relay_loop(self) -> None:
        if self.hold:
            time.sleep(self.hold)
        if _SPLICE:
            self._splice_loop()
            return
        buf = memoryview(bytearray(self.slice))  # reused: a relay allocates nothing per byte
        while True:
            try:
                n, reset = self.src.recv_into(buf), False
            except OSError:
                n, reset = 0, True
            if not n:
                self._finish(reset)
                return
            self._pace(n)
            if not self._send(buf[:n]):
                return

    def _splice_loop(self) -> None:
        """The relay without copies (Linux): socket -> pipe -> socket with ``splice``, so the
        emulator's ceiling stays far above the links it emulates."""
        r, w = os.pipe()
        try:
            with contextlib.suppress(OSError):  # the default pipe size (64 KiB) works, in smaller slices
                fcntl.fcntl(w, _F_SETPIPE_SZ, self.slice)
            src, dst = self.src.fileno(), self.dst.fileno()
            while True:
                try:
                    n, reset = os.splice(src, w, self.slice), False
                except OSError:
                    n, reset = 0, True
                if not n:
                    self._finish(reset)
                    return
                self._pace(n)
                try:
                    while n:
                        n -= os.splice(r, dst, n)
                except OSError:
                    self.conn.abort()
                    return
        finally:
            os.close(r)
            os.close(w)

    # ------------------------------------------------------------------ delay line: two threads
    def _read_loop(self) -> None:
        if self.hold:
            time.sleep(self.hold)
        while True:
            with self.cond:
                while self.queued >= self.limit and not self.conn.closed:
                    self.cond.wait(0.5)
            if self.conn.closed:
                return
            data, reset = self._recv()
            if data:
                self._pace(len(data))
            with self.cond:
                self.queue.append((time.monotonic() + self.delay, data or None, reset))
                self.queued += len(data)
                self.cond.notify_all()
            if not data:
                return

    def _write_loop(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.conn.closed:
                    self.cond.wait(0.5)
                if not self.queue:
                    return
                due, data, reset = self.queue[0]
            _sleep_until(due)
            with self.cond:
                self.queue.popleft()
                if data:
                    self.queued -= len(data)
                self.cond.notify_all()
            if data is None:
                self._finish(reset)
                return
            if not self._send(data):
                return

    # ------------------------------------------------------------------ shared parts
    def _recv(self) -> tuple[bytes, bool]:
        """(bytes, was_reset): empty bytes at the end of the stream."""
        try:
            return self.src.recv(self.slice), False
        except OSError:
            return b"", True

    def _pace(self, n: int) -> None:
        for pacer in self.pacers:  # one after the other: a byte leaves when every bucket lets it
            _sleep_until(pacer.reserve(n))
        self.bytes += n

    def _send(self, data: bytes | memoryview) -> bool:
        try:
            self.dst.sendall(data)
            return True
        except OSError:
            self.conn.abort()
            return False

    def _finish(self, reset: bool) -> None:
        """The source ended: pass the end on (a reset as a reset, an EOF as a half-close)."""
        if reset:
            self.conn.abort()
        else:
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)
            self.conn.direction_done()


class _Connection:
    """A client connection and its own connection to the server."""

    def __init__(self, owner: LinkEmulator, client: socket.socket, server: socket.socket) -> None:
        self.owner, self.client, self.server = owner, client, server
        self.closed = False
        self._open = 2
        self._lock = threading.Lock()
        s = owner.shape
        pacers = [p for p in (Pacer(s.flow_rate) if s.flow_rate else None, owner.shared) if p is not None]
        self.up = _Direction(self, client, server, pacers, s.up_delay, s.handshake, "up")
        self.down = _Direction(self, server, client, [], s.down_delay, 0.0, "down")

    def start(self) -> None:
        self.up.start()
        self.down.start()

    def direction_done(self) -> None:
        with self._lock:
            self._open -= 1
            last = self._open == 0
        if last:
            self.close()

    def abort(self) -> None:
        """Reset both sides (SO_LINGER 0), as a cut wire would end up."""
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.server):
            # close() alone would not wake a thread blocked in recv() on it (nor end the connection)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        for d in (self.up, self.down):
            with d.cond:
                d.cond.notify_all()
        self.owner._forget(self)


class LinkEmulator:
    """The front, in this process: ``start()`` listens on loopback, ``stop()`` ends every relay."""

    def __init__(
        self, upstream: tuple[str, int], shape: LinkShape, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the link emulator listens on loopback only")
        self.upstream = upstream
        self.shape = shape
        self.shared = Pacer(shape.shared_rate) if shape.shared_rate else None
        self.sock = socket.create_server((host, port), backlog=64)
        self.host, self.port = self.sock.getsockname()[:2]
        rates = [r for r in (shape.flow_rate, shape.shared_rate) if r]
        if rates:
            # Accepted sockets inherit this before their first window is announced. Left to
            # loopback's autotuning, the emulator's kernel would take megabytes the pacer has
            # not let through yet (and the client's send buffer would grow to match): a
            # bottleneck queue of seconds at 512 KiB/s. Real routers queue tens of ms.
            size = int(min(_MAX_RCVBUF, max(_MIN_RCVBUF, min(rates) * _QUEUE_SECONDS)))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            # Loopback's 64 KiB segments make a client's kernel start with a ~4 MB send
            # buffer (ten segments' worth, doubled), seconds of data at 512 KiB/s that a
            # close() still delivers; with Ethernet's segment size it starts near 60 KB and
            # grows with the congestion window, as on a real host.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, _MSS)
        self._conns: set[_Connection] = set()
        self._lock = threading.Lock()
        self._stopping = False
        self.accepted = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LinkEmulator:
        threading.Thread(target=self._accept_loop, name="link-accept", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping = True
        # wakes the accept() blocked in the accept thread (close() alone would not, on Linux)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.abort()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, client, server)
            with self._lock:
                if self._stopping:
                    conn.abort()
                    return
                self._conns.add(conn)
                self.accepted += 1
            conn.start()


def _rate(text: str) -> float:
    """``40MB`` (10^6), ``5MiB`` (2^20) or a plain number of bytes per second."""
    t = text.strip().removesuffix("/s")
    try:
        if t.upper().endswith("MB") and not t.upper().endswith("IB"):
            return float(t[:-2]) * 1e6
        return float(parse_size(t))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _host_port(text: str) -> tuple[str, int]:
    text = text.removeprefix("http://").rstrip("/")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.link", description=__doc__.split("\n")[0])
    p.add_argument("--upstream", type=_host_port, required=True, help="the server, HOST:PORT (loopback)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--flow-rate", type=_rate, help="per connection, upstream: e.g. 40MB (10^6) or 5MiB")
    p.add_argument("--shared-rate", type=_rate, help="all connections together, upstream")
    p.add_argument(
        "--rtt", type=float, help="round trip, seconds: half each way, and connect costs one round trip"
    )
    p.add_argument("--up-delay", type=float, default=0.0, help="seconds, client to server")
    p.add_argument("--down-delay", type=float, default=0.0, help="seconds, server to client")
    p.add_argument(
        "--handshake", type=float, default=0.0, help="seconds before a new connection's first byte"
    )
    return p


def shape_from_args(args: argparse.Namespace) -> LinkShape:
    if args.rtt is not None:
        return LinkShape.symmetric(args.rtt, flow_rate=args.flow_rate, shared_rate=args.shared_rate)
    return LinkShape(args.flow_rate, args.shared_rate, args.up_delay, args.down_delay, args.handshake)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    link = LinkEmulator(args.upstream, shape_from_args(args), port=args.port).start()
    print(
        f"link: serving on {link.url} -> {args.upstream[0]}:{args.upstream[1]} ({link.shape.describe()})",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    link.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
