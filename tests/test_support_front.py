"""The HTTP/1.1 framing every test front shares (tests/support/front.py), over real sockets.

The gate, the forward proxy and the chaos campaign's BurstFront all relay by these; a head
that arrives in many segments, a body partly read with the head, or a peer that closes
early must come out the same through each of them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.support.front import content_length, header, read_head, relay, relay_answer

HEAD = b"POST /upload HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: 12\r\nContent-Type: a/b\r\n\r\n"


class Trickle(socket.socket):
    """A real socket whose ``recv`` returns at most ``most`` bytes and records what was asked:
    the many small segments a loaded loopback may deliver, every time."""

    def __init__(self, sock: socket.socket, most: int) -> None:
        super().__init__(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self.most = most
        self.asked: list[int] = []

    def recv(self, n: int, flags: int = 0) -> bytes:
        self.asked.append(n)
        return super().recv(min(n, self.most), flags)


class Sink:
    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def sendall(self, data: bytes, /) -> None:
        self.pieces.append(data)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.settimeout(60)
    b.settimeout(60)
    yield a, b
    a.close()
    b.close()


def test_a_head_in_one_byte_segments_is_read_whole(pair):
    writer, reader = pair
    writer.sendall(HEAD + b"hello world!")
    buf = bytearray()
    with Trickle(reader, 1) as src:
        assert read_head(src, buf) == HEAD
        assert len(src.asked) == len(HEAD) and buf == b""  # one recv a byte, none past the head


def test_the_bytes_after_a_head_stay_in_the_buffer_and_go_first(pair):
    writer, reader = pair
    writer.sendall(HEAD + b"hello ")
    writer.sendall(b"world!NEXT")
    buf = bytearray()
    head = read_head(reader, buf)
    assert head == HEAD
    sink = Sink()
    counted: list[int] = []
    assert relay(reader, sink, buf, content_length(head), count=counted.append) is True
    assert b"".join(sink.pieces) == b"hello world!" and sum(counted) == 12
    while len(buf) < 4:  # what came after the body is the next request's: still to be read
        buf += reader.recv(4)
    assert buf == b"NEXT"


def test_a_body_held_whole_in_the_buffer_needs_no_recv(pair):
    _writer, reader = pair
    buf = bytearray(b"abcdXYZ")
    sink = Sink()
    with Trickle(reader, 1 << 16) as src:
        assert relay(src, sink, buf, 4) is True
        assert sink.pieces == [b"abcd"] and buf == b"XYZ" and src.asked == []


def test_relay_reads_in_pieces_of_at_most_piece_bytes(pair):
    writer, reader = pair
    body = bytes(range(256)) * 64  # 16 KiB
    writer.sendall(body)
    sink = Sink()
    with Trickle(reader, 1 << 20) as src:
        assert relay(src, sink, bytearray(b"ab"), 2 + len(body), piece=1000) is True
        assert src.asked and max(src.asked) <= 1000
    assert b"".join(sink.pieces) == b"ab" + body


def test_a_peer_that_closes_early_is_told_apart(pair):
    writer, reader = pair
    writer.sendall(HEAD[:20])
    writer.shutdown(socket.SHUT_WR)
    assert read_head(reader, bytearray()) is None
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"only five")
        a.shutdown(socket.SHUT_WR)
        b.settimeout(60)
        sink = Sink()
        assert relay(b, sink, bytearray(), 100) is False
        assert b"".join(sink.pieces) == b"only five"


def test_an_answer_is_passed_on_head_and_body(pair):
    server, upstream = pair
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    server.sendall(answer)
    c, d = socket.socketpair()
    with c, d, Trickle(upstream, 3) as trickle:
        d.settimeout(60)
        assert relay_answer(trickle, c) is True
        c.shutdown(socket.SHUT_WR)
        got = b""
        while data := d.recv(1024):
            got += data
        assert got == answer
        server.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\ncut")
        server.shutdown(socket.SHUT_WR)
        assert relay_answer(trickle, Sink()) is False


def test_a_head_over_the_limit_is_refused(pair):
    writer, reader = pair
    writer.sendall(b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 5000)
    assert read_head(reader, bytearray(), limit=1024) is None


def test_headers_are_found_by_name_whatever_the_case():
    assert header(HEAD, b"content-type") == b"a/b"
    assert header(HEAD, b"x-missing") == b""
    assert content_length(HEAD) == 12
    assert content_length(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == 0
    # the request line is not a header, even when it looks like one
    assert header(b"content-length: 5\r\nHost: x\r\n\r\n", b"content-length") == b""
