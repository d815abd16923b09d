"""Error answers on WCS routes are WCS-shaped (PROTOCOLS.md B6); the uploader route keeps its own."""

from __future__ import annotations

import json
import time

from nbupload.protocols import wcs

from .conftest import append, token


def _wcs_error(r) -> dict:
    body = json.loads(r.content)
    assert set(body) == {"code", "message"} and isinstance(body["code"], str), body
    return body


def test_unknown_routes_are_404_in_the_wcs_shape(server, client):
    for method, path in [("GET", "/nowhere"), ("POST", "/mkblk/4194304"), ("PUT", "/file/x")]:
        r = client.request(method, server.url + path)
        assert r.status_code == 404
        assert _wcs_error(r)["code"] == "404"


def test_get_on_append_is_405_in_the_wcs_shape(server, client):
    r = client.get(server.url + "/append/0")
    assert r.status_code == 405 and _wcs_error(r)["code"] == "405"


def test_401_carries_the_object_headers_when_the_token_is_signed_but_expired(server, client):
    tok = token("bkt")
    assert append(client, server.url, 0, b"a" * 500, tok, key="k.bin").ok
    expired = token("bkt", deadline_ms=int(time.time() * 1000) - 60_000)
    enc = wcs.prepare_append(expired, wcs_source(b"b" * 10), key="k.bin")
    r = client.post(server.url + "/append/500", content=iter(enc), headers=enc.headers)
    assert r.status_code == 401
    assert _wcs_error(r)["code"] == "401"
    assert r.headers["x-wcs-object-type"] == "Appendable"
    assert r.headers["x-wcs-next-append-position"] == "500"
    answer = wcs.process_append_answer(r.status_code, r.headers.items(), r.content)
    assert not answer.ok and answer.status == 401


def test_a_forged_token_learns_nothing_about_the_object(server, client):
    tok = token("bkt")
    assert append(client, server.url, 0, b"a" * 500, tok, key="k.bin").ok
    forged = token("bkt", sk="guessed")
    enc = wcs.prepare_append(forged, wcs_source(b"b" * 10), key="k.bin")
    r = client.post(server.url + "/append/500", content=iter(enc), headers=enc.headers)
    assert r.status_code == 401 and _wcs_error(r)["code"] == "401"
    assert "x-wcs-object-type" not in r.headers and "x-wcs-next-append-position" not in r.headers


def test_a_normal_object_is_409_with_its_type(server, client):
    (server.root / "bkt").mkdir(parents=True)
    (server.root / "bkt" / "plain.bin").write_bytes(b"z" * 42)
    enc = wcs.prepare_append(token("bkt"), wcs_source(b"b"), key="plain.bin")
    r = client.post(server.url + "/append/42", content=iter(enc), headers=enc.headers)
    assert r.status_code == 409 and _wcs_error(r)["code"] == "409"
    assert r.headers["x-wcs-object-type"] == "Normal"


def test_the_uploader_route_keeps_the_uploader_shape(server, client):
    r = client.post(server.upload_url, content=b"x", headers={"content-type": "text/plain"})
    body = json.loads(r.content)
    assert r.status_code == 400 and body["result"] == "ERROR" and body["code"] == 400


def wcs_source(data: bytes):
    from nbupload.protocols.multipart import BytesSource

    return BytesSource(data)
