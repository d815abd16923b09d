"""WCS append upload against the real server over loopback HTTP."""

from __future__ import annotations

import base64
import json
import time

import pytest

from nbupload.protocols import wcs
from nbupload.protocols.multipart import BytesSource, Field, FilePart, MultipartEncoder
from nbupload.server import start_server

from .conftest import AK, SK, append, data_of, raw_request, token, wait_for

MiB = 1024 * 1024


def test_sequential_appends_hash_across_blocks(server, client):
    tok = token("bkt")
    data = data_of(4 * MiB + 300_000, 1)
    cuts = [0, 1000, 3 * MiB, 4 * MiB, 4 * MiB + 1, len(data)]  # ends exactly on the block edge too
    for a, b in zip(cuts, cuts[1:]):
        ans = append(client, server.url, a, data[a:b], tok, key="logs/app.log")
        assert ans.ok, ans.describe()
        assert ans.next_position == b and ans.object_type == "Appendable"
        assert ans.hash == wcs.etag_of(data[:b])
    assert (server.root / "bkt" / "logs" / "app.log").read_bytes() == data
    assert server.stats()["wcs"]["bytes"] == len(data)
    # the etag state lives outside the object tree
    assert sorted(p.name for p in (server.root / "bkt" / "logs").iterdir()) == ["app.log"]
    assert any((server.root / ".wcs").glob("*.blocks"))


def test_appends_resume_after_restart(tmp_path, client):
    root = tmp_path / "root"
    tok = token("bkt:k.bin")
    data = data_of(5 * MiB, 2)
    with start_server(root, credentials={AK: SK}) as srv:
        assert append(client, srv.url, 0, data[: 4 * MiB + 10], tok).ok
    with start_server(root, credentials={AK: SK}) as srv:
        ans = append(client, srv.url, 4 * MiB + 10, data[4 * MiB + 10 :], tok)
        assert ans.ok and ans.hash == wcs.etag_of(data)


def test_409_wrong_position_and_replay_judgement(server, client):
    tok = token("bkt")
    assert append(client, server.url, 0, b"hello", tok, key="k").ok
    ans = append(client, server.url, 0, b"hello", tok, key="k")  # a replay of a landed append
    assert ans.status == 409 and ans.next_position == 5
    assert wcs.judge_replay(0, 5, ans).landed
    ans = append(client, server.url, 9, b"x", tok, key="k")
    assert ans.status == 409 and ans.next_position == 5
    assert (server.root / "bkt" / "k").read_bytes() == b"hello"
    ans = append(client, server.url, 3, b"x", tok, key="new-object")
    assert ans.status == 409 and ans.next_position == 0
    assert not (server.root / "bkt" / "new-object").exists()


def test_409_normal_object(server, client):
    (server.root / "bkt").mkdir()
    (server.root / "bkt" / "plain.txt").write_bytes(b"uploaded some other way")
    ans = append(client, server.url, 23, b"more", token("bkt"), key="plain.txt")
    assert ans.status == 409 and ans.object_type == "Normal"
    assert (server.root / "bkt" / "plain.txt").read_bytes() == b"uploaded some other way"


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: token("bkt", sk="wrong-secret"), "signature"),
        (lambda: token("bkt", deadline_ms=int(time.time() * 1000) - 1000), "expired"),
        (lambda: token("bkt", deadline_ms=str(int(time.time() * 1000) - 1000)), "expired"),
        (lambda: token("bkt:other-key"), "does not cover"),
        (lambda: token("bkt", ak="nobody"), "unknown access key"),
        (lambda: "not-a-token", "malformed"),
    ],
)
def test_401_token_failures_never_leak_secrets(server, client, make, needle):
    ans = append(client, server.url, 0, b"data", make(), key="k")
    assert ans.status == 401 and needle in ans.message
    assert SK not in ans.message and "wrong-secret" not in ans.message
    assert not (server.root / "bkt").exists()


def test_deadline_as_string_is_accepted(server, client):
    tok = token("bkt", deadline_ms=str(int(time.time() * 1000) + 60_000))
    assert append(client, server.url, 0, b"ok", tok, key="s").ok


def test_413_fsize_limit_and_max_file_size(server, client, tmp_path):
    tok = token("bkt", fsizeLimit=10)
    assert append(client, server.url, 0, b"12345678", tok, key="lim").ok
    ans = append(client, server.url, 8, b"abc", tok, key="lim")
    assert ans.status == 413
    assert (server.root / "bkt" / "lim").read_bytes() == b"12345678"
    with start_server(tmp_path / "r2", credentials={AK: SK}, max_file_size=100) as srv:
        assert append(client, srv.url, 0, b"x" * 101, token("bkt"), key="big").status == 413
        assert not (srv.root / "bkt" / "big").exists()


def test_return_body_fields_come_first(server, client):
    tok = token("bkt", returnBody="key=$(key)&fsize=$(fsize)&who=$(x:who)")
    ans = append(client, server.url, 0, b"abc", tok, key="rb", variables={"who": "me"})
    assert ans.ok
    assert ans.fields == {"key": "rb", "fsize": "3", "who": "me", "hash": wcs.etag_of(b"abc")}


def test_file_part_before_token_is_spooled(server, client):
    """The WCS document's curl example puts the file part first."""
    tok = token("bkt")
    data = data_of(2 * MiB + 5, 3)
    enc = MultipartEncoder(
        [FilePart("file", "8.png", BytesSource(data)), Field("key", "m.png"), Field("token", tok)]
    )
    r = client.post(f"{server.url}/append/0", content=iter(enc), headers=enc.headers)
    ans = wcs.process_append_answer(r.status_code, r.headers.items(), r.content)
    assert ans.ok and ans.next_position == len(data) and ans.hash == wcs.etag_of(data)
    assert (server.root / "bkt" / "m.png").read_bytes() == data
    assert list((server.root / ".wcs" / "spool").iterdir()) == []
    # a spooled append that turns out wrong leaves nothing behind either
    enc = MultipartEncoder(
        [FilePart("file", "x", BytesSource(b"zz")), Field("key", "m.png"), Field("token", tok)]
    )
    r = client.post(f"{server.url}/append/0", content=iter(enc), headers=enc.headers)
    assert r.status_code == 409 and int(r.headers["x-wcs-next-append-position"]) == len(data)
    assert list((server.root / ".wcs" / "spool").iterdir()) == []


def test_cut_short_append_leaves_object_unchanged(server, client):
    tok = token("bkt")
    first = data_of(100_000, 4)
    assert append(client, server.url, 0, first, tok, key="cut").ok
    enc = wcs.prepare_append(tok, BytesSource(data_of(3 * MiB, 5)), key="cut")
    body = enc.read_all()
    head = (
        f"POST /append/{len(first)} HTTP/1.1\r\nHost: x\r\nContent-Type: {enc.content_type}\r\n"
        f"Content-Length: {enc.content_length}\r\nConnection: close\r\n\r\n"
    ).encode()
    raw_request("127.0.0.1", server.port, head, body[: 2 * MiB], close_early=True)
    assert wait_for(lambda: server.stats()["wcs"]["errors"] == 1)
    assert (server.root / "bkt" / "cut").read_bytes() == first
    more = b"tail"
    ans = append(client, server.url, len(first), more, tok, key="cut")
    assert ans.ok and ans.hash == wcs.etag_of(first + more)


def test_cut_short_first_append_leaves_no_object(server, client):
    tok = token("bkt")
    enc = wcs.prepare_append(tok, BytesSource(data_of(MiB, 6)), key="never")
    body = enc.read_all()
    head = (
        f"POST /append/0 HTTP/1.1\r\nHost: x\r\nContent-Type: {enc.content_type}\r\n"
        f"Content-Length: {enc.content_length + 100}\r\nConnection: close\r\n\r\n"
    ).encode()
    raw_request("127.0.0.1", server.port, head, body, close_early=True)
    assert wait_for(lambda: server.stats()["wcs"]["errors"] == 1)
    assert not (server.root / "bkt" / "never").exists()


@pytest.mark.parametrize(
    ("path", "key", "status"),
    [
        ("/append/abc", "k", 400),
        ("/append/-1", "k", 400),
        ("/append/0", "../../escape", 400),
        ("/append/0", "/abs", 400),
        ("/append/0", "a\\b", 400),
    ],
)
def test_400_malformed(server, client, tmp_path, path, key, status):
    enc = wcs.prepare_append(token("bkt"), BytesSource(b"x"), key=key)
    r = client.post(server.url + path, content=iter(enc), headers=enc.headers)
    assert r.status_code == status
    assert json.loads(r.content)["message"]
    assert not (tmp_path / "escape").exists()


def test_400_no_file_part_and_not_multipart(server, client):
    enc = MultipartEncoder([Field("token", token("bkt")), Field("key", "k")])
    r = client.post(server.url + "/append/0", content=enc.read_all(), headers=enc.headers)
    assert r.status_code == 400 and "file" in r.json()["message"]
    r = client.post(
        server.url + "/append/0", content=b"raw", headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 400


def test_symlinked_bucket_is_refused(server, client, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (server.root / "evil").symlink_to(outside)
    ans = append(client, server.url, 0, b"x", token("evil"), key="k")
    assert ans.status == 400
    assert list(outside.iterdir()) == []


def test_concurrent_appends_to_one_object_are_serialized(server):
    import concurrent.futures

    import httpx

    tok = token("bkt")
    with httpx.Client(timeout=30) as c, concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda i: append(c, server.url, 0, bytes([65 + i]) * 50_000, tok, key="race"), range(4))
        )
    assert sum(a.ok for a in answers) == 1
    assert all(a.status == 409 and a.next_position == 50_000 for a in answers if not a.ok)
    assert len((server.root / "bkt" / "race").read_bytes()) == 50_000


def test_success_body_is_urlsafe_base64(server, client):
    enc = wcs.prepare_append(token("bkt"), BytesSource(b"UMUTech@qq.com"), key="v")
    r = client.post(server.url + "/append/0", content=iter(enc), headers=enc.headers)
    assert r.status_code == 200
    assert base64.urlsafe_b64decode(r.content) == b"hash=FpAEzHGOWdh-QAYhattxl1vqHLMw"
    assert r.headers["x-wcs-next-append-position"] == "14"
    assert r.headers["x-wcs-object-type"] == "Appendable"


def test_planted_sidecar_symlink_is_refused(server, client, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (server.root / ".wcs").symlink_to(outside)
    ans = append(client, server.url, 0, b"data", token("bkt"), key="k")
    assert ans.status == 507
    assert list(outside.iterdir()) == []
    assert not (server.root / "bkt" / "k").exists()  # the append was rolled back


def test_key_field_after_the_file_part_is_honoured(server, client):
    tok = token("bkt")
    enc = MultipartEncoder(
        [Field("token", tok), FilePart("file", "f", BytesSource(b"late key")), Field("key", "late")]
    )
    r = client.post(f"{server.url}/append/0", content=iter(enc), headers=enc.headers)
    assert r.status_code == 200, r.text
    assert (server.root / "bkt" / "late").read_bytes() == b"late key"


def test_scope_key_without_key_field_streams_directly(server, client):
    tok = token("bkt:scoped.bin")
    ans = append(client, server.url, 0, b"scoped", tok)
    assert ans.ok and (server.root / "bkt" / "scoped.bin").read_bytes() == b"scoped"
    assert not (server.root / ".wcs" / "spool").exists()  # never spooled
