"""The uploader protocol against the real server over loopback HTTP."""

from __future__ import annotations

import concurrent.futures
import json
import random

import httpx
import pytest

from nbupload.protocols import uploader
from nbupload.protocols.multipart import BytesSource, Field, MultipartEncoder, new_boundary
from nbupload.protocols.ranges import RangeSet
from nbupload.server import start_server

from .conftest import SEED_BOUNDARY, answer, data_of, query, raw_request, send_chunk, tree

SEED_QUERY = b"server=uploader&action=query&boundary=----WebKitFormBoundaryaXBly1C8VXJFfgdS"


def seed_chunk_body(plain: bytes, chunk: bytes) -> bytes:
    """A body shaped like the seed's chunk example: a plain file part, a ranged part of the
    same field, and a ``submit`` field, in that order."""
    b = SEED_BOUNDARY.encode()
    return (
        b"--" + b + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="image.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + plain + b"\r\n"
        b"--" + b + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="image.jpg"; range="102400-204800/456770"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + chunk + b"\r\n"
        b"--" + b + b"\r\n"
        b'Content-Disposition: form-data; name="submit"\r\n\r\n'
        b".....\r\n"
        b"--" + b + b"--\r\n"
    )


def test_seed_query_byte_for_byte_unknown_session(server, client):
    r = client.post(
        server.upload_url, content=SEED_QUERY, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 200
    assert answer(r) == {
        "protocol": "uploader",
        "support": True,
        "boundary": SEED_BOUNDARY,
        "file": [],
        "data": [],
    }


def test_seed_chunk_example_then_query(server, client):
    plain = data_of(3000, 1)
    chunk = data_of(102400, 2)
    r = client.post(
        server.upload_url,
        content=seed_chunk_body(plain, chunk),
        headers={"Content-Type": f"multipart/form-data; boundary={SEED_BOUNDARY}"},
    )
    assert r.status_code == 200, r.text
    body = answer(r)
    assert body["result"] == "OK" and body["code"] == 0
    assert body["range"] == "102400-204800" and body["complete"] is False
    assert [f["name"] for f in body["files"]] == ["file", "file"]
    # the plain part is a whole file, stored at once
    assert (server.root / "image.jpg").read_bytes() == plain
    # the query (exact seed bytes) now lists the held range and the data field
    r = client.post(
        server.upload_url, content=SEED_QUERY, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert answer(r) == {
        "protocol": "uploader",
        "support": True,
        "boundary": SEED_BOUNDARY,
        "file": [{"name": "file", "range": "102400-204800"}],
        "data": [{"name": "submit"}],
    }
    got = uploader.process_query_answer(r.status_code, r.content, SEED_BOUNDARY)
    assert got.resumable and got.ranges_for("file") == RangeSet([(102400, 204800)])


def test_out_of_order_chunks_complete_and_move_atomically(server, client):
    data = data_of(300_000, 3)
    boundary = new_boundary()
    pieces = [(s, min(s + 65536, len(data))) for s in range(0, len(data), 65536)]
    random.Random(7).shuffle(pieces)
    for i, (s, e) in enumerate(pieces):
        r = send_chunk(client, server.upload_url, boundary, data, s, e, filename="out of order.bin")
        body = answer(r)
        assert r.status_code == 200 and body["result"] == "OK"
        if i < len(pieces) - 1:
            assert body["complete"] is False
            assert not (server.root / "out of order.bin").exists()  # never visible before whole
    assert (
        body["complete"] is True
        and body["range"] == f"0-{len(data)}"
        and body["stored"] == "out of order.bin"
    )
    assert (server.root / "out of order.bin").read_bytes() == data
    # overlapping and repeated chunks after completion are fine and counted as duplicates
    before = server.stats()["uploader"]["duplicate_bytes"]
    r = send_chunk(client, server.upload_url, boundary, data, 1000, 70000, filename="out of order.bin")
    assert answer(r)["complete"] is True
    assert server.stats()["uploader"]["duplicate_bytes"] == before + 69000
    assert query(client, server.upload_url, boundary).ranges_for("file") == RangeSet([(0, len(data))])


def test_concurrent_overlapping_chunks(server):
    data = data_of(1_000_000, 4)
    boundary = new_boundary()
    spans = [(s, min(s + 131072, len(data))) for s in range(0, len(data), 100_000)]  # overlapping
    with httpx.Client(timeout=30) as c, concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda sp: send_chunk(c, server.upload_url, boundary, data, *sp), spans))
    assert all(r.status_code == 200 and answer(r)["result"] == "OK" for r in results)
    assert any(answer(r).get("complete") for r in results)
    assert (server.root / "data.bin").read_bytes() == data
    stats = server.stats()["uploader"]
    assert stats["bytes"] == sum(e - s for s, e in spans)
    # duplicates are bytes already held when a chunk arrives: at most the overlaps here
    assert 0 <= stats["duplicate_bytes"] <= sum(e - s for s, e in spans) - len(data)


def test_restart_mid_session_keeps_held_ranges(tmp_path, client):
    root = tmp_path / "root"
    data = data_of(250_000, 5)
    boundary = new_boundary()
    with start_server(root) as first:
        assert (
            send_chunk(
                client, first.upload_url, boundary, data, 0, 100_000, fields={"note": "v1"}
            ).status_code
            == 200
        )
        assert (
            send_chunk(
                client, first.upload_url, boundary, data, 200_000, 250_000, fields={"note": "v2"}
            ).status_code
            == 200
        )
    with start_server(root) as second:
        got = query(client, second.upload_url, boundary)
        assert got.resumable and got.ranges_for("file") == RangeSet([(0, 100_000), (200_000, 250_000)])
        assert got.data == ("note",)
        assert not (root / "data.bin").exists()
        for gap in got.ranges_for("file").missing(len(data)):
            r = send_chunk(client, second.upload_url, boundary, data, gap.start, gap.end)
        assert answer(r)["complete"] is True
    assert (root / "data.bin").read_bytes() == data
    meta = next((root / ".partial").glob("*/session.json"))
    assert json.loads(meta.read_text())["data"] == {"note": "v2"}  # the last value kept


def test_plain_upload_and_attachments_disposition(server, client):
    r = client.post(server.upload_url, files={"doc": ("notes.txt", b"hello")}, data={"who": "me"})
    assert r.status_code == 200 and answer(r)["complete"] is True
    assert (server.root / "notes.txt").read_bytes() == b"hello"
    boundary = "xyzBOUNDARY"
    body = (
        f'--{boundary}\r\nContent-Disposition: attachments; name="f"; filename="att.txt"; range="0-3/3"\r\n\r\n'
        f"abc\r\n--{boundary}--\r\n"
    ).encode()
    r = client.post(
        server.upload_url, content=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert r.status_code == 200 and answer(r)["complete"] is True
    assert (server.root / "att.txt").read_bytes() == b"abc"


def test_empty_file_and_zero_total(server, client):
    boundary = new_boundary()
    r = send_chunk(client, server.upload_url, boundary, b"", 0, 0, filename="empty.txt")
    assert r.status_code == 200 and answer(r)["complete"] is True
    assert (server.root / "empty.txt").read_bytes() == b""


@pytest.mark.parametrize(
    ("name", "filename"),
    [
        ('we"ird', 'quo"te "name".txt'),
        ("文件", "报告 ü ñ.csv"),
        ("line\r\nbreak", "two\r\nlines.txt"),
        ("semi;colon", "a;b=c.txt"),
    ],
)
def test_encoder_round_trip_through_server_parser(server, client, name, filename):
    data = data_of(5000, 6)
    boundary = new_boundary()
    r = send_chunk(
        client,
        server.upload_url,
        boundary,
        data,
        0,
        2000,
        name=name,
        filename=filename,
        fields={"title": 'x"y\r\nz ü'},
    )
    assert r.status_code == 200, r.text
    got = query(client, server.upload_url, boundary)
    assert got.ranges_for(name) == RangeSet([(0, 2000)])  # the field name survived exactly
    r = send_chunk(client, server.upload_url, boundary, data, 2000, 5000, name=name, filename=filename)
    stored = answer(r)["stored"]
    assert stored == filename.replace("\r", "_").replace("\n", "_")
    assert (server.root / stored).read_bytes() == data
    session = next((server.root / ".partial").glob("*/session.json"))
    assert json.loads(session.read_text())["data"] == {"title": 'x"y\r\nz ü'}


@pytest.mark.parametrize(
    "filename",
    [
        "../../escape.txt",
        "..\\..\\escape.txt",
        "/tmp/escape.txt",
        "%2e%2e%2fescape.txt",
        ".partial",
        "sub/../../escape.txt",
        "a\x00escape.txt",
    ],
)
def test_path_traversal_filenames_stay_in_root(server, client, tmp_path, filename):
    outside_before = sorted(p.name for p in tmp_path.iterdir())
    r = client.post(server.upload_url, files={"file": (filename, b"payload")})
    assert r.status_code == 200, r.text
    stored = answer(r)["stored"]
    assert "/" not in stored and not stored.startswith(".")
    assert (server.root / stored).read_bytes() == b"payload"
    assert sorted(p.name for p in tmp_path.iterdir()) == outside_before
    assert (server.root / ".partial").is_dir()  # the internal dir was not replaced


def test_symlink_planted_under_root_is_not_followed(server, client, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    (server.root / "trap.txt").symlink_to(victim)
    r = client.post(server.upload_url, files={"file": ("trap.txt", b"overwritten?")})
    assert r.status_code == 200
    assert victim.read_bytes() == b"precious"
    assert not (server.root / "trap.txt").is_symlink()
    assert (server.root / "trap.txt").read_bytes() == b"overwritten?"


# ----------------------------------------------------------------------------- errors
def _err(r: httpx.Response, status: int, code: int) -> str:
    body = answer(r)
    assert r.status_code == status, r.text
    assert body["result"] == "ERROR" and body["code"] == code
    return body["message"]


def test_4001_request_too_large_declared_and_streamed(tmp_path, client):
    with start_server(tmp_path / "r", max_request_size=64 * 1024) as srv:
        data = data_of(100_000)
        boundary = new_boundary()
        msg = _err(send_chunk(client, srv.upload_url, boundary, data, 0, len(data)), 413, 4001)
        assert "65536" in msg
        # chunked transfer: no Content-Length, counted while reading
        enc = uploader.prepare_chunk(boundary, BytesSource(data), 0, len(data), filename="data.bin")
        headers = {"Content-Type": enc.content_type}
        _err(client.post(srv.upload_url, content=(p for p in enc), headers=headers), 413, 4001)
        assert query(client, srv.upload_url, boundary).ranges_for("file") == RangeSet()
        # within the limit works
        assert send_chunk(client, srv.upload_url, boundary, data, 0, 50_000).status_code == 200


def test_4002_file_too_large(tmp_path, client):
    with start_server(tmp_path / "r", max_file_size=10_000) as srv:
        data = data_of(20_000)
        msg = _err(send_chunk(client, srv.upload_url, new_boundary(), data, 0, 100), 413, 4002)
        assert "20000" in msg  # refused on the declared total, before any data
        _err(client.post(srv.upload_url, files={"file": ("big.bin", data)}), 413, 4002)
        assert not (srv.root / "big.bin").exists()
        assert [p for p in (srv.root / ".partial").iterdir()] == []  # temp file removed
        assert client.post(srv.upload_url, files={"file": ("ok.bin", data[:10_000])}).status_code == 200


def test_4003_part_shorter_than_range(server, client):
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.bin"; range="0-100/200"\r\n\r\n'
        + "x" * 60
        + f"\r\n--{boundary}--\r\n"
    ).encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    _err(client.post(server.upload_url, content=body, headers=headers), 400, 4003)
    # a body that stops before its closing boundary
    _err(client.post(server.upload_url, content=body[: body.index(b"xxxx") + 10], headers=headers), 400, 4003)
    assert query(client, server.upload_url, boundary).ranges_for("file") == RangeSet()


def test_4003_client_goes_away_mid_chunk(server, client):
    data = data_of(400_000, 8)
    boundary = new_boundary()
    enc = uploader.prepare_chunk(boundary, BytesSource(data), 0, len(data), filename="data.bin")
    body = enc.read_all()
    head = (
        f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: {enc.content_type}\r\n"
        f"Content-Length: {enc.content_length}\r\nConnection: close\r\n\r\n"
    ).encode()
    raw_request("127.0.0.1", server.port, head, body[: len(body) // 2], close_early=True)
    from .conftest import wait_for

    assert wait_for(lambda: server.stats()["uploader"]["errors"] == 1)
    assert query(client, server.upload_url, boundary).ranges_for("file") == RangeSet()
    r = send_chunk(client, server.upload_url, boundary, data, 0, len(data))
    assert r.status_code == 200 and answer(r)["complete"] is True, r.text
    assert (server.root / "data.bin").read_bytes() == data


def test_4004_no_file_part(server, client):
    _err(client.post(server.upload_url, files={"file": ("", b"")}, data={"a": "1"}), 400, 4004)
    enc = MultipartEncoder([Field("only", "fields")])
    _err(client.post(server.upload_url, content=enc.read_all(), headers=enc.headers), 400, 4004)


def test_4006_partial_dir_cannot_be_created(server, client):
    assert not (server.root / ".partial").exists()  # made on first need
    (server.root / ".partial").write_text("in the way")
    _err(send_chunk(client, server.upload_url, new_boundary(), b"abc", 0, 3), 500, 4006)
    _err(client.post(server.upload_url, files={"file": ("p.txt", b"abc")}), 500, 4006)
    assert not (server.root / "p.txt").exists()


def test_4008_denied_extension(tmp_path, client):
    with start_server(tmp_path / "r", deny_extensions=[".exe", "bat"]) as srv:
        msg = _err(client.post(srv.upload_url, files={"file": ("setup.EXE", b"MZ")}), 403, 4008)
        assert "server-side rule" in msg
        _err(
            send_chunk(client, srv.upload_url, new_boundary(), b"x" * 10, 0, 5, filename="run.bat. "),
            403,
            4008,
        )
        assert tree(srv.root) == []  # nothing written at all


@pytest.mark.parametrize(
    ("disposition", "needle"),
    [
        ('form-data; name="file"; filename="a"; range="5-2/10"', "end before start"),
        ('form-data; name="file"; filename="a"; range="0-20/10"', "past total"),
        ('form-data; name="file"; filename="a"; range="zero-1/10"', "range"),
        ('inline; name="file"; filename="a"', "Content-Disposition"),
    ],
)
def test_400_malformed_ranges(server, client, disposition, needle):
    body = f"--bb\r\nContent-Disposition: {disposition}\r\n\r\n0123456789\r\n--bb--\r\n".encode()
    msg = _err(
        client.post(
            server.upload_url, content=body, headers={"Content-Type": "multipart/form-data; boundary=bb"}
        ),
        400,
        400,
    )
    assert needle in msg


def test_400_total_mismatch_and_overlong_part(server, client):
    boundary = new_boundary()
    data = data_of(1000)
    assert send_chunk(client, server.upload_url, boundary, data, 0, 100).status_code == 200
    msg = _err(send_chunk(client, server.upload_url, boundary, data[:900], 100, 200), 400, 400)
    assert "1000" in msg and "900" in msg
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="data.bin"; range="100-110/1000"\r\n\r\n'
        + "y" * 50
        + f"\r\n--{boundary}--\r\n"
    ).encode()
    msg = _err(
        client.post(
            server.upload_url,
            content=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        ),
        400,
        400,
    )
    assert "longer than its range" in msg
    assert query(client, server.upload_url, boundary).ranges_for("file") == RangeSet([(0, 100)])


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--x\r\n"),
        ("multipart/form-data; boundary=bad{char}", b"--x\r\n"),
        ("multipart/form-data; boundary=" + "b" * 71, b"--x\r\n"),
        ("application/x-www-form-urlencoded", b"server=other&action=query&boundary=abc"),
        ("application/x-www-form-urlencoded", b"server=uploader&action=query&boundary=" + b"a" * 80),
        ("text/plain", b"hello"),
        ("multipart/form-data; boundary=zz", b"garbage that is not multipart"),
    ],
)
def test_400_bad_requests(server, client, content_type, body):
    r = client.post(server.upload_url, content=body, headers={"Content-Type": content_type})
    assert r.status_code == 400
    assert answer(r)["result"] == "ERROR" and answer(r)["message"]


def test_status_and_stats_endpoints(server, client):
    assert client.get(server.url + "/").json()["server"] == "nbupload"
    client.post(server.upload_url, files={"file": ("s.txt", b"12345")})
    stats = client.get(server.url + "/_nbupload/stats").json()
    assert stats["uploader"]["requests"] == 1 and stats["uploader"]["bytes"] == 5
    assert stats == server.stats()


def test_stale_partial_sessions_expire(tmp_path, client):
    root = tmp_path / "r"
    boundary = new_boundary()
    with start_server(root) as srv:
        send_chunk(client, srv.upload_url, boundary, b"abcdef", 0, 3)
    assert len(list((root / ".partial").iterdir())) == 1
    with start_server(root, partial_ttl=3600) as srv:  # fresh: kept at start
        assert query(client, srv.upload_url, boundary).ranges_for("file") == RangeSet([(0, 3)])
    import os
    import time

    session_dir = next((root / ".partial").iterdir())
    old = time.time() - 7200
    for p in session_dir.iterdir():
        os.utime(p, (old, old))
    with start_server(root, partial_ttl=3600) as srv:  # stale: swept at start
        assert list((root / ".partial").iterdir()) == []
        assert query(client, srv.upload_url, boundary).ranges_for("file") == RangeSet()


def test_4001_with_expect_100_continue_answers_before_the_body(tmp_path):
    """curl sends ``Expect: 100-continue`` for big bodies: the 413 comes without the body."""
    import subprocess

    big = tmp_path / "big.bin"
    big.write_bytes(data_of(3 * 1024 * 1024))
    with start_server(tmp_path / "r", max_request_size=1024 * 1024) as srv:
        out = subprocess.run(
            [
                "/usr/bin/curl",
                "-sS",
                "-H",
                "Expect: 100-continue",
                "-F",
                f"file=@{big}",
                "-w",
                "\n%{size_upload}",
                srv.upload_url,
            ],
            capture_output=True,
            timeout=60,
            check=True,
        )
        answer_text, _, uploaded = out.stdout.decode().rpartition("\n")
        assert json.loads(answer_text)["code"] == 4001
        assert int(uploaded) == 0  # the body was never sent
        assert srv.stats()["uploader"]["bytes"] == 0
        assert not (srv.root / "big.bin").exists()


def test_throttle_paces_request_bodies(tmp_path, client):
    import time

    data = data_of(256 * 1024)
    with start_server(tmp_path / "r", throttle=512 * 1024) as srv:
        t0 = time.monotonic()
        r = client.post(srv.upload_url, files={"file": ("slow.bin", data)})
        elapsed = time.monotonic() - t0
    assert r.status_code == 200
    assert elapsed >= 0.3  # 256 KiB at 512 KiB/s: about half a second, never near-instant


def test_stale_sessions_expire_periodically_while_running(tmp_path, client):
    from .conftest import wait_for

    with start_server(tmp_path / "r", partial_ttl=1.0) as srv:
        boundary = new_boundary()
        send_chunk(client, srv.upload_url, boundary, b"abcdef", 0, 3)
        assert query(client, srv.upload_url, boundary).ranges_for("file") == RangeSet([(0, 3)])
        assert wait_for(lambda: not any((srv.root / ".partial").iterdir()))
        assert query(client, srv.upload_url, boundary).ranges_for("file") == RangeSet()
