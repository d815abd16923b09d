"""Malformed multipart, range abuse, absurd sizes, slow-drip bodies and a full disk.

Every request goes over a raw socket to a real server process, byte for byte as written
here (most of them httpx would refuse to build). Each must get its documented answer
(docs/protocols.md: 400 + code 400 for a malformed request, 4003 for a body that ends
early, 4004 for no file, 413 + 4001/4002 for sizes, 507 + 4007 for a failed write), the
server must survive, hold no memory in proportion to what a request *claims*, and write
nothing outside the root or under a final name.
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
from collections.abc import Callable

import pytest
from hostile_client import append, append_body, chunk_body, make_token, plain_body, post_multipart, query
from hostile_fixtures import ACCESS_KEY, MAX_REQUEST_SIZE, SECRET_KEY, HostileServer
from hostile_net import RawResponse, form_part, http_request, multipart, raw_exchange

from nbupload.protocols import uploader as up
from nbupload.protocols import wcs
from nbupload.protocols.multipart import new_boundary
from tests.support.helpers import wait_for
from tests.support.rawhttp import read_answer

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024
B = "----hostile" + "x" * 20
FILE = form_part(b'form-data; name="file"; filename="a.bin"; range="0-5/10"', b"12345")


def _up(
    body: bytes, ctype: str | None = None, **kw: object
) -> Callable[[tuple[str, int]], RawResponse | None]:
    """A request whose boundary ``B`` is replaced, at send time, by a fresh one: every case
    is its own upload session."""
    ctype = ctype or f"multipart/form-data; boundary={B}"

    def send(addr: tuple[str, int]) -> RawResponse | None:
        fresh = new_boundary()[: len(B)]
        raw = http_request(
            "POST",
            "/upload",
            [("Content-Type", ctype.replace(B, fresh))],
            body.replace(B.encode(), fresh.encode()),
            **kw,
        )
        return raw_exchange(addr, raw)

    return send


def stats(server: HostileServer) -> dict:
    answer = raw_exchange(
        server.address, http_request("GET", "/_nbupload/stats", [], b"", content_length=None)
    )
    assert answer is not None and answer.status == 200
    return json.loads(answer.body)


def _chunk(disposition: bytes, data: bytes = b"12345") -> Callable:
    return _up(multipart(B, [form_part(disposition, data)]))


# (id, request, expected HTTP status, expected uploader code)
MALFORMED = [
    ("no-boundary-param", _up(multipart(B, [FILE]), "multipart/form-data"), 400, 400),
    (
        "boundary-param-duplicated",
        _up(multipart(B, [FILE]), f"multipart/form-data; boundary={B}; boundary=zz"),
        400,
        400,
    ),
    ("boundary-mismatch", _up(multipart("other-boundary", [FILE])), 400, 400),
    (
        "boundary-too-long",
        _up(multipart("b" * 100, [FILE]), "multipart/form-data; boundary=" + "b" * 100),
        400,
        400,
    ),
    (
        "boundary-with-crlf",
        _up(multipart(B, [FILE]), f'multipart/form-data; boundary="{B}\\r\\nX: y"'),
        400,
        400,
    ),
    ("closing-boundary-missing", _up(multipart(B, [FILE], close=False)), 400, 4003),
    ("no-boundary-at-all", _up(b"just some bytes, no multipart"), 400, 400),
    ("empty-body", _up(b""), 400, 4003),
    (
        "part-header-without-end",
        _up(b"--" + B.encode() + b'\r\nContent-Disposition: form-data; name="f"; filename="' + b"a" * 20_000),
        400,
        400,
    ),
    (
        "part-headers-never-finished",
        _up(b"--" + B.encode() + b'\r\nContent-Disposition: form-data; name="f"\r\n' + b"X-Pad: 1\r\n" * 30),
        400,
        400,
    ),
    ("part-without-disposition", _up(multipart(B, [b"Content-Type: text/plain\r\n\r\nabc"])), 400, 400),
    ("disposition-type-inline", _chunk(b'inline; name="file"; filename="a"'), 400, 400),
    (
        "too-many-parts",
        _up(multipart(B, [form_part(b'form-data; name="a"', b"1")] * 1200 + [FILE])),
        400,
        400,
    ),
    (
        "field-too-large",
        _up(multipart(B, [form_part(b'form-data; name="a"', b"x" * 100_000), FILE])),
        400,
        400,
    ),
    (
        "nested-multipart-mixed",
        _up(
            multipart(
                B,
                [
                    form_part(
                        b'form-data; name="file"', multipart("in", [FILE]), "multipart/mixed; boundary=in"
                    )
                ],
            )
        ),
        400,
        4004,
    ),
    ("no-file-part", _up(multipart(B, [form_part(b'form-data; name="a"', b"1")])), 400, 4004),
    ("not-multipart", _up(b"hello", "text/plain"), 400, 400),
    (
        "query-too-large",
        _up(
            b"server=uploader&action=query&boundary=B&x=" + b"a" * 20_000, "application/x-www-form-urlencoded"
        ),
        400,
        400,
    ),
    (
        "query-not-a-query",
        _up(b"server=uploader&action=delete&boundary=B", "application/x-www-form-urlencoded"),
        400,
        400,
    ),
    (
        "query-boundary-traversal",
        _up(b"server=uploader&action=query&boundary=..%2F..%2F%0D%0A", "application/x-www-form-urlencoded"),
        400,
        400,
    ),
    # range abuse
    ("range-negative", _chunk(b'form-data; name="file"; filename="a"; range="-5-0/10"'), 400, 400),
    ("range-reversed", _chunk(b'form-data; name="file"; filename="a"; range="5-0/10"'), 400, 400),
    ("range-past-total", _chunk(b'form-data; name="file"; filename="a"; range="8-13/10"'), 400, 400),
    ("range-http-style", _chunk(b'form-data; name="file"; filename="a"; range="bytes=0-5"'), 400, 400),
    (
        "range-non-ascii-digits",
        _chunk('form-data; name="file"; filename="a"; range="0-\u0665/10"'.encode()),
        400,
        400,
    ),
    (
        "range-20-digits",
        _chunk(b'form-data; name="file"; filename="a"; range="0-5/99999999999999999999"'),
        400,
        400,
    ),
    (
        "range-data-longer-than-range",
        _chunk(b'form-data; name="file"; filename="a"; range="0-5/10"', b"1234567"),
        400,
        400,
    ),
    (
        "range-data-shorter-than-range",
        _chunk(b'form-data; name="file"; filename="a"; range="0-5/10"', b"123"),
        400,
        4003,
    ),
    (
        "range-total-over-max-file-size",
        _chunk(b'form-data; name="file"; filename="a"; range="0-5/1000000000000"'),
        413,
        4002,
    ),
    (
        "range-gigantic-offset",
        _chunk(
            b'form-data; name="file"; filename="a"; '
            b'range="999999999999999995-1000000000000000000/1000000000000000000"'
        ),
        413,
        4002,
    ),
    (
        "range-parameter-duplicated",
        _chunk(b'form-data; name="file"; filename="a"; range="0-5/10"; range="5-10/10"'),
        400,
        400,
    ),
    (
        "filename-parameter-duplicated",
        _chunk(b'form-data; name="file"; filename="a.bin"; filename="../b.bin"; range="0-5/10"'),
        400,
        400,
    ),
    # transport-level abuse: answered by the HTTP layer (uvicorn), before the app
    ("content-length-negative", _up(multipart(B, [FILE]), content_length=-1), 400, None),
    ("content-length-garbage", _up(multipart(B, [FILE]), content_length="12abc"), 400, None),
    (
        "content-length-twice",
        lambda addr: raw_exchange(
            addr,
            http_request(
                "POST",
                "/upload",
                [("Content-Type", f"multipart/form-data; boundary={B}"), ("Content-Length", "3")],
                multipart(B, [FILE]),
            ),
        ),
        400,
        None,
    ),
]


@pytest.mark.parametrize(("case", "request_", "status", "code"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_upload_requests(fence, case, request_, status, code):
    answer = request_(fence.address)
    assert answer is not None, "the server closed without answering"
    assert answer.status == status, answer.text
    if code is not None:
        judged = up.process_chunk_answer(answer.status, answer.body)
        assert not judged.ok and judged.code == code and judged.message, answer.text
    assert not (fence.root / "a.bin").exists() and not (fence.root / "a").exists()


def test_total_changing_inside_one_session_is_refused(fence):
    boundary = new_boundary()
    first = raw_exchange(
        fence.address, post_multipart("/upload", boundary, chunk_body(boundary, b"t.bin", b"x" * 10, 0, 20))
    )
    assert first is not None and first.status == 200
    for total in (30, 15, 10):
        body = chunk_body(boundary, b"t.bin", b"y" * 5, 10, total)
        again = raw_exchange(fence.address, post_multipart("/upload", boundary, body))
        assert again is not None and again.status == 400, again and again.text
        assert "total" in json.loads(again.body)["message"]
    held = up.process_query_answer(200, query(fence.address, boundary).body, boundary)
    assert str(held.ranges_for("file")) == "0-10"
    assert not (fence.root / "t.bin").exists()


# --------------------------------------------------------------------------- WCS request abuse
def _token(scope: str = "bkt", **kw: object) -> str:
    return make_token(scope, access_key=ACCESS_KEY, secret_key=SECRET_KEY, **kw)


@pytest.mark.parametrize(
    ("position", "status"),
    # "%31" is "/append/1" once the path is percent-decoded, as HTTP servers do: a mismatch.
    [
        ("-1", 400),
        ("99999999999999999999", 400),
        ("1/../../etc", 400),
        ("%31", 409),
        ("\u0661", 400),
        ("0x10", 400),
        ("5", 409),
        ("1%2F..%2F..", 400),
    ],
)
def test_append_position_abuse(fence, position, status):
    answer = append(
        fence.address, position.encode("utf-8").decode("latin-1"), _token(), b"data", key="pos.log"
    )
    assert answer is not None and answer.status == status, answer and answer.text
    if "json" in answer.headers.get("content-type", ""):  # else uvicorn refused the request line
        assert json.loads(answer.body)["message"]
    if status == 409:
        assert answer.headers[wcs.APPEND_POSITION_HEADER] == "0"
    assert not (fence.root / "bkt" / "pos.log").exists()


def test_append_past_fsize_limit_is_413_and_leaves_the_object(fence):
    token = _token(fsizeLimit=10)
    first = append(fence.address, 0, token, b"12345678", key="lim.log")
    assert first is not None and first.status == 200
    second = append(fence.address, 8, token, b"abc", key="lim.log")
    assert second is not None and second.status == 413, second and second.text
    assert (fence.root / "bkt" / "lim.log").read_bytes() == b"12345678"


@pytest.mark.parametrize("token_first", [True, False])
def test_append_malformed_bodies(fence, token_first):
    boundary = new_boundary()
    body = append_body(boundary, _token(), b"abc", key="m.log", token_first=token_first)
    for cut, status in (
        (body[:-10], 400),
        (body.replace(b'name="file"', b'name="nofile"', 1).replace(b'; filename="f.bin"', b""), 400),
    ):
        answer = raw_exchange(fence.address, post_multipart("/append/0", boundary, cut))
        assert answer is not None and answer.status == status, answer and answer.text
    assert not (fence.root / "bkt" / "m.log").exists()


# --------------------------------------------------------------------------- memory and slow drips
def _rss_after(server: HostileServer, action: Callable[[], object]) -> int:
    before = server.proc.rss()
    action()
    return server.proc.rss() - before


def _stream(address, head: bytes, total: int, piece: int = 64 * 1024) -> RawResponse | None:
    def pieces():
        yield head
        sent = 0
        block = os.urandom(piece)
        while sent < total:
            yield block
            sent += piece

    return raw_exchange(address, pieces(), half_close=True, timeout=60)


@pytest.mark.parametrize("claimed", [10**12, 10**18])
def test_memory_does_not_follow_claimed_sizes(tmp_path, claimed):
    """A chunk claiming a huge total and a huge Content-Length, then 24 MiB of real bytes:
    the server streams them to disk (no limits configured here) and its RSS barely moves."""
    server = HostileServer(tmp_path, log_level="warning")
    server.proc.start()
    try:
        boundary = new_boundary()
        head_part = (
            b"--"
            + boundary.encode()
            + b'\r\nContent-Disposition: form-data; name="file"; filename="big.bin"; '
            + f'range="0-{claimed}/{claimed}"'.encode()
            + b"\r\n\r\n"
        )
        head = http_request(
            "POST",
            "/upload",
            [("Content-Type", f"multipart/form-data; boundary={boundary}")],
            b"",
            content_length=claimed,
        )
        growth = _rss_after(server, lambda: _stream(server.address, head + head_part, 24 * MiB))
        assert growth < 16 * MiB, f"RSS grew by {growth / MiB:.1f} MiB"
        # WCS: a 24 MiB append body under a Content-Length claiming a petabyte.
        wb = new_boundary()
        whead = http_request(
            "POST",
            "/append/0",
            [("Content-Type", f"multipart/form-data; boundary={wb}")],
            b"",
            content_length=10**15,
        )
        wpart = append_body(wb, _token(), b"", key="big.log").rsplit(b"\r\n--", 1)[0]
        growth = _rss_after(server, lambda: _stream(server.address, whead + wpart, 24 * MiB))
        assert growth < 16 * MiB, f"RSS grew by {growth / MiB:.1f} MiB"
        assert server.proc.alive
        # Both bodies were cut: nothing under a final name, the half-made object rolled back.
        wait_for(  # the server handles a client's disconnect asynchronously
            lambda: not (server.root / "bkt" / "big.log").exists(),
            30,
            0.05,
            what="the half-made big.log rolled back",
        )
        assert not (server.root / "big.bin").exists()
    finally:
        server.proc.stop()


def _stream_until_answer(
    address, head: bytes, limit: int, piece: int = 256 * 1024
) -> tuple[RawResponse | None, int]:
    """Send ``head`` then body bytes until the server answers (or ``limit`` bytes went out)."""
    sock = socket.create_connection(address, timeout=30)
    sent = 0
    try:
        sock.sendall(head)
        block = b"\0" * piece
        while sent < limit:
            readable, writable, _ = select.select([sock], [sock], [], 5)
            if readable:
                break
            if writable:
                try:
                    sent += sock.send(block)
                except (BrokenPipeError, ConnectionResetError):
                    break
        return read_answer(sock), sent
    finally:
        sock.close()


def test_declared_size_over_the_request_limit_is_4001_and_bounded(fence):
    """A Content-Length a thousand times the per-request limit: answered 413/4001 after at
    most the server's bounded drain, without memory growth."""
    head = http_request(
        "POST",
        "/upload",
        [("Content-Type", f"multipart/form-data; boundary={B}")],
        b"",
        content_length=MAX_REQUEST_SIZE * 1000,
    )
    before = fence.proc.rss()
    answer, sent = _stream_until_answer(fence.address, head, 200 * MiB)
    assert answer is not None, f"no answer after {sent} bytes"
    judged = up.process_chunk_answer(answer.status, answer.body)
    assert (answer.status, judged.code) == (413, 4001), answer.text
    assert sent < 100 * MiB
    assert fence.proc.rss() - before < 16 * MiB


def test_slow_drip_body_still_lands_and_others_are_served(fence):
    """One body dribbled a few bytes at a time over ~2 s; meanwhile 20 other uploads are
    answered promptly. Then 50 connections that never finish their headers."""
    boundary = new_boundary()
    data = os.urandom(300)
    body = plain_body(boundary, b"drip.bin", data)
    request = post_multipart("/upload", boundary, body)
    pieces: list[bytes | float] = []
    for i in range(0, len(request), 16):
        pieces += [request[i : i + 16], 0.05]
    result: list[RawResponse | None] = []
    dripper = threading.Thread(target=lambda: result.append(raw_exchange(fence.address, pieces, timeout=60)))
    dripper.start()
    slowloris = []
    for _ in range(50):
        sock = socket.create_connection(fence.address)
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Ty")
        slowloris.append(sock)
    try:
        for i in range(20):  # answered while 50 connections hold their headers open
            b2 = new_boundary()
            answer = raw_exchange(
                fence.address, post_multipart("/upload", b2, plain_body(b2, f"fast{i}.bin".encode(), b"x"))
            )
            assert answer is not None and answer.status == 200
        dripper.join(60)
        assert result and result[0] is not None and result[0].status == 200, result
        assert (fence.root / "drip.bin").read_bytes() == data
    finally:
        for sock in slowloris:
            sock.close()


def test_chunk_cut_mid_body_leaves_nothing_acknowledged(fence):
    boundary = new_boundary()
    data = os.urandom(200_000)
    request = post_multipart("/upload", boundary, chunk_body(boundary, b"cut.bin", data, 0, len(data)))
    errors = stats(fence)["uploader"]["errors"]
    assert raw_exchange(fence.address, request[: len(request) // 2], half_close=True) is None
    wait_for(  # the server handles a client's disconnect asynchronously
        lambda: stats(fence)["uploader"]["errors"] > errors,
        30,
        0.05,
        what="the cut chunk counted as an error",
    )
    held = up.process_query_answer(200, query(fence.address, boundary).body, boundary).ranges_for("file")
    assert not held, f"bytes of an unfinished chunk were acknowledged: {held}"
    assert not (fence.root / "cut.bin").exists()


# --------------------------------------------------------------------------- disk full
def test_disk_full_gives_4007_and_nothing_under_the_final_name(tmp_path):
    """RLIMIT_FSIZE of 1 MiB on the server process: every write past it fails with EFBIG,
    as on a full disk."""
    server = HostileServer(tmp_path, fsize_limit=1 * MiB, log_level="warning")
    server.proc.start()
    try:
        data = os.urandom(3 * MiB)
        boundary = new_boundary()
        assert query(server.address, boundary).status == 200
        answers = []
        for start in range(0, len(data), MiB // 2):
            piece = data[start : start + MiB // 2]
            body = chunk_body(boundary, b"full.bin", piece, start, len(data))
            answers.append(raw_exchange(server.address, post_multipart("/upload", boundary, body)))
        failures = [
            up.process_chunk_answer(a.status, a.body) for a in answers if a is not None and a.status != 200
        ]
        assert failures and all((f.status, f.code) == (507, 4007) for f in failures), [
            a and a.text for a in answers
        ]
        assert "disk" in failures[0].message.lower()
        assert not (server.root / "full.bin").exists()

        plain_b = new_boundary()
        plain = raw_exchange(
            server.address, post_multipart("/upload", plain_b, plain_body(plain_b, b"plain-full.bin", data))
        )
        judged = up.process_chunk_answer(plain.status, plain.body)
        assert (plain.status, judged.code) == (507, 4007), plain.text
        assert not (server.root / "plain-full.bin").exists()

        first = append(server.address, 0, _token(), data[: MiB // 2], key="full.log")
        assert first is not None and first.status == 200, first and first.text
        second = append(server.address, MiB // 2, _token(), data[MiB // 2 : 2 * MiB], key="full.log")
        assert second is not None and second.status == 507, second and second.text
        assert (server.root / "bkt" / "full.log").read_bytes() == data[: MiB // 2]  # exactly as before
        assert server.proc.alive
    finally:
        server.proc.stop()
