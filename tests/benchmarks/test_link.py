"""The link emulator itself: bytes pass through intact both ways, and pacing and delays are
never beaten.

Timing is asserted only as lower bounds (a busy machine can only make a transfer slower):
a link paced to R cannot move N bytes in much less than N/R, and an answer cannot come
back sooner than the configured delays.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from benchmarks.link import LinkEmulator, LinkShape, Pacer


class EchoServer:
    """Loopback TCP echo: sends back every byte, half-closes when the client does."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()[:2]
        self.ended = threading.Event()  # a client connection reached its end (EOF or reset)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            conn.close()
            self.ended.set()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


def _roundtrip(link: LinkEmulator, payload: bytes) -> tuple[bytes, float]:
    """Send ``payload`` through the link to the echo server, half-close, read to EOF."""
    with socket.create_connection((link.host, link.port), timeout=60) as c:
        got = bytearray()

        def read() -> None:
            while data := c.recv(1 << 20):
                got.extend(data)

        reader = threading.Thread(target=read)
        t0 = time.monotonic()
        reader.start()
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        reader.join(60)
        assert not reader.is_alive(), "the echo never ended: EOF did not pass through the link"
        return bytes(got), time.monotonic() - t0


SHAPES = {
    "relay": LinkShape(),
    "paced, 20 ms RTT": LinkShape.symmetric(0.020, flow_rate=50e6),
    "answers late": LinkShape(down_delay=0.030),
    "shared rate": LinkShape.symmetric(0.010, shared_rate=50e6),
}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_bytes_pass_through_intact_both_ways_and_eof_follows(echo: EchoServer, shape: LinkShape) -> None:
    payload = os.urandom(3 << 20) + bytes(range(256)) * 7
    with LinkEmulator(echo.address, shape) as link:
        got, _ = _roundtrip(link, payload)
    assert len(got) == len(payload)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


def test_pacing_is_never_faster_than_the_rate(echo: EchoServer) -> None:
    rate, n = 4e6, 2_000_000
    with LinkEmulator(echo.address, LinkShape(flow_rate=rate)) as link:
        got, elapsed = _roundtrip(link, os.urandom(n))
    assert len(got) == n
    assert elapsed >= 0.8 * n / rate  # 0.4 s: a busy machine only makes it slower


def test_a_shared_rate_caps_all_connections_together(echo: EchoServer) -> None:
    rate, n, flows = 4e6, 1_000_000, 3
    results: list[tuple[bytes, float]] = []
    with LinkEmulator(echo.address, LinkShape(shared_rate=rate)) as link:
        threads = [
            threading.Thread(target=lambda: results.append(_roundtrip(link, os.urandom(n))))
            for _ in range(flows)
        ]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        elapsed = time.monotonic() - t0
    assert [len(got) for got, _ in results] == [n] * flows
    assert elapsed >= 0.8 * flows * n / rate  # together, not each: 0.6 s


def test_an_answer_comes_back_no_sooner_than_the_round_trip(echo: EchoServer) -> None:
    shape = LinkShape(up_delay=0.03, down_delay=0.05, handshake=0.04)
    with (
        LinkEmulator(echo.address, shape) as link,
        socket.create_connection((link.host, link.port), timeout=30) as c,
    ):
        t0 = time.monotonic()
        c.sendall(b"ping")
        first = c.recv(16)
        first_elapsed = time.monotonic() - t0  # handshake + up + down
        t1 = time.monotonic()
        c.sendall(b"pong")
        second = c.recv(16)
        second_elapsed = time.monotonic() - t1  # up + down only: the connection is up
    assert (first, second) == (b"ping", b"pong")
    assert first_elapsed >= 0.04 + 0.03 + 0.05 - 0.005
    assert second_elapsed >= 0.03 + 0.05 - 0.005


def test_a_client_reset_reaches_the_server(echo: EchoServer) -> None:
    with LinkEmulator(echo.address, LinkShape.symmetric(0.010, flow_rate=10e6)) as link:
        c = socket.create_connection((link.host, link.port), timeout=30)
        c.sendall(b"x" * 100_000)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # RST
        assert echo.ended.wait(30), "the server's connection never ended after the client's reset"


def test_pacer_reservations_hold_the_rate_and_give_no_idle_credit() -> None:
    pacer = Pacer(1e6)
    t0 = time.monotonic()
    ends = [pacer.reserve(100_000) for _ in range(5)]
    assert ends == sorted(ends)
    assert ends[-1] - t0 >= 0.5 - 0.005  # 500 kB at 1 MB/s, minus at most the bucket's depth
    time.sleep(max(0.0, ends[-1] - time.monotonic()) + 0.2)  # idle for 0.2 s
    before = time.monotonic()
    later = pacer.reserve(100_000)
    assert later >= before + 0.1 - 0.005  # the idle time saved no credit beyond the bucket's depth
    with pytest.raises(ValueError):
        Pacer(0)


def test_the_emulator_listens_on_loopback_only(echo: EchoServer) -> None:
    with pytest.raises(ValueError, match="loopback"):
        LinkEmulator(echo.address, LinkShape(), host="0.0.0.0")


def test_stop_ends_every_relayed_connection(echo: EchoServer) -> None:
    link = LinkEmulator(echo.address, LinkShape.symmetric(0.010)).start()
    with socket.create_connection((link.host, link.port), timeout=30) as c:
        c.sendall(b"ping")
        assert c.recv(16) == b"ping"
        link.stop()
        try:
            end = c.recv(16)
        except ConnectionResetError:
            end = b""
        assert end == b""  # EOF or reset: the relay is gone, not left hanging
    assert echo.ended.wait(30)
    with pytest.raises(OSError):
        socket.create_connection((link.host, link.port), timeout=5).close()
