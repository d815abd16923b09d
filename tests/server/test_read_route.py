"""Reading stored files back (``GET``/``HEAD /files/...``, ``/wcs/...``) and relative
uploader names (PROTOCOLS.md A8), against the real server over loopback."""

from __future__ import annotations

import json
import os

from nbupload.protocols import uploader, wcs
from nbupload.protocols.multipart import BytesSource, new_boundary

from .conftest import append, data_of, query, raw_request, send_chunk, token


def _plain(client, url: str, data: bytes, filename: str):
    enc = uploader.prepare_plain(new_boundary(), BytesSource(data), filename=filename)
    return client.post(url, content=iter(enc), headers=enc.headers)


def _resumable(client, url: str, data: bytes, filename: str) -> dict:
    boundary = new_boundary()
    assert query(client, url, boundary).resumable
    half = len(data) // 2
    assert send_chunk(client, url, boundary, data, 0, half, filename=filename).status_code == 200
    r = send_chunk(client, url, boundary, data, half, len(data), filename=filename)
    assert r.status_code == 200, r.text
    return json.loads(r.content)


def test_a_relative_name_keeps_its_folders(server, client):
    data = data_of(300_000)
    answer = _resumable(client, server.upload_url, data, "run1/sub/metrics.csv")
    assert answer["stored"] == "run1/sub/metrics.csv"
    assert (server.root / "run1" / "sub" / "metrics.csv").read_bytes() == data
    r = _plain(client, server.upload_url, b"plain", "run1/notes.txt")
    assert r.status_code == 200 and json.loads(r.content)["stored"] == "run1/notes.txt"
    assert (server.root / "run1" / "notes.txt").read_bytes() == b"plain"


def test_names_leaving_the_root_are_reduced_inside_it(server, client, tmp_path):
    for raw, stored in [
        ("../../escape.csv", "escape.csv"),
        ("/etc/abs.csv", "abs.csv"),
        ("a/../b.csv", "b.csv"),
        ("C:\\Users\\x\\win.csv", "win.csv"),
        ("run1/.hidden/h.csv", "h.csv"),
        ("a//b.csv", "b.csv"),
    ]:
        r = _plain(client, server.upload_url, raw.encode(), raw)
        assert r.status_code == 200, r.text
        assert json.loads(r.content)["stored"] == stored
        assert (server.root / stored).read_bytes() == raw.encode()
    assert not (tmp_path / "escape.csv").exists()


def test_a_symlinked_folder_is_never_written_through(server, client, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    server.root.mkdir(exist_ok=True)
    os.symlink(outside, server.root / "run1")
    r = _plain(client, server.upload_url, b"x", "run1/m.csv")
    assert r.status_code == 507 and json.loads(r.content)["code"] == 4007
    assert list(outside.iterdir()) == []


def test_get_and_head_serve_a_stored_file(server, client):
    data = data_of(2_500_000)
    _resumable(client, server.upload_url, data, "run1/big.bin")
    r = client.get(f"{server.url}/files/run1/big.bin")
    assert r.status_code == 200 and r.content == data
    assert r.headers["x-wcs-object-type"] == "Normal" and r.headers["accept-ranges"] == "bytes"
    h = client.head(f"{server.url}/files/run1/big.bin")
    assert h.status_code == 200 and int(h.headers["content-length"]) == len(data) and h.content == b""
    r = client.get(f"{server.url}/files/run1/big.bin", headers={"Range": "bytes=2000000-"})
    assert r.status_code == 206 and r.content == data[2_000_000:]
    assert r.headers["content-range"] == f"bytes 2000000-{len(data) - 1}/{len(data)}"
    r = client.get(f"{server.url}/files/run1/big.bin", headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == data[-10:]
    r = client.get(f"{server.url}/files/run1/big.bin", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"
    stat = client.get(f"{server.url}/files/run1/big.bin?stat").json()
    assert stat["size"] == len(data) and stat["hash"] == wcs.etag_of(data) and stat["appendable"] is False


def test_unicode_and_encoded_names(server, client):
    _plain(client, server.upload_url, b"u", "résultats/données été.csv")
    r = client.get(f"{server.url}/files/r%C3%A9sultats/donn%C3%A9es%20%C3%A9t%C3%A9.csv")
    assert r.status_code == 200 and r.content == b"u"


def test_a_growing_wcs_object_is_readable_up_to_its_committed_size(server, client):
    tok = token("logs")
    base = server.url
    content = b""
    for i in range(3):
        piece = f"step {i}\n".encode() * 100
        a = append(client, base, len(content), piece, tok, key="run/train.log")
        assert a.ok
        content += piece
        r = client.get(f"{base}/wcs/logs/run/train.log")
        assert r.status_code == 200 and r.content == content
        assert r.headers["x-wcs-object-type"] == "Appendable"
    # bytes of an append not committed yet (as a crash mid-append leaves them) are not served
    with open(server.root / "logs" / "run" / "train.log", "ab") as f:
        f.write(b"uncommitted")
    assert client.get(f"{base}/files/logs/run/train.log").content == content
    stat = client.get(f"{base}/wcs/logs/run/train.log?stat").json()
    assert stat == {**stat, "size": len(content), "hash": wcs.etag_of(content), "appendable": True}
    tail = client.get(f"{base}/wcs/logs/run/train.log", headers={"Range": f"bytes={len(content) - 7}-"})
    assert tail.status_code == 206 and tail.content == content[-7:]


def test_errors_have_the_shape_of_their_route(server, client):
    r = client.get(f"{server.url}/wcs/logs/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == "404" and r.json()["message"]
    r = client.get(f"{server.url}/files/nothing-here")
    assert r.status_code == 404 and r.json() == {**r.json(), "result": "ERROR", "code": 404}
    r = client.post(f"{server.url}/files/x", content=b"")
    assert r.status_code == 405 and "GET" in r.headers["allow"]
    r = client.get(f"{server.url}/wcs/only-a-bucket")
    assert r.status_code == 400 and r.json()["code"] == "400"


def _raw_get(server, target: bytes) -> int:
    head = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = raw_request("127.0.0.1", server.port, head, b"")
    assert answer is not None, (target, "the server closed the connection without an answer")
    return answer.status


def test_hostile_read_paths_are_refused(server, client, tmp_path):
    (tmp_path / "secret.txt").write_bytes(b"secret")
    _plain(client, server.upload_url, b"ok", "a/ok.txt")
    append(client, server.url, 0, b"x", token("logs"), key="k")  # creates .wcs/ sidecars
    os.symlink(tmp_path / "secret.txt", server.root / "link.txt")
    os.symlink(tmp_path, server.root / "linkdir")
    for target in [
        b"/files/../secret.txt",
        b"/files/a/../../secret.txt",
        b"/files/%2e%2e/secret.txt",
        b"/files/a%2F..%2F..%2Fsecret.txt",
        b"/files/.wcs/spool",
        b"/files/.partial",
        b"/files/a/%00",
        b"/files/a\\..\\..\\secret.txt",
        b"/files//etc/passwd",
        b"/files/link.txt",
        b"/files/linkdir/secret.txt",
        b"/files/a",
        b"/files/",
        b"/wcs/logs/..%2F..%2Fsecret.txt",
    ]:
        status = _raw_get(server, target)
        assert status in (400, 404), (target, status)
    assert _raw_get(server, b"/files/a/ok.txt") == 200
