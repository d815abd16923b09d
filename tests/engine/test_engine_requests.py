"""Request shapes and answer handling, with httpx.MockTransport (the loopback tests cover
the same paths against the real server; these pin exact headers and odd answers)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

import nbupload
from nbupload.engine import TaskState, UploadFailed
from nbupload.protocols import uploader
from tests.support.helpers import wait_for


def _mock(make_engine, handler, **settings):
    """An engine whose every request goes to ``handler`` (``Engine(transport=...)``)."""
    return make_engine(transport=httpx.MockTransport(handler), **settings)


def _query_ok(request: httpx.Request, held: str = "") -> httpx.Response:
    boundary = uploader.parse_query_request(request.read())
    from nbupload.protocols.ranges import RangeSet

    return httpx.Response(200, content=uploader.format_query_answer(boundary, {"file": RangeSet.parse(held)}))


def test_chunk_requests_have_exact_shape(make_engine):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers["content-type"].startswith("application/x-www-form-urlencoded"):
            return _query_ok(request, "0-100")
        body = request.read()
        last = b'range="200-250/250"' in body
        return httpx.Response(200, content=b'{result:"OK",complete:true}' if last else b'{result:"OK"}')

    engine = _mock(make_engine, handler, chunk_size=100, chunk_max=100, streams=1, journal=False)
    task = engine.submit(bytes(250), "http://up.example/upload", headers={"X-Trace": "t"}, filename="z.bin")
    task.wait(10, raise_on_error=True)
    query, *chunks = seen
    assert query.content == f"server=uploader&action=query&boundary={task.spec.boundary}".encode()
    assert len(chunks) == 2  # 0-100 was held already
    for req, rng in zip(chunks, ("100-200/250", "200-250/250"), strict=True):
        assert req.headers["content-type"] == f"multipart/form-data; boundary={task.spec.boundary}"
        assert int(req.headers["content-length"]) == len(req.content)
        assert "transfer-encoding" not in req.headers
        assert req.headers["x-trace"] == "t" and req.headers["user-agent"].startswith("nbupload/")
        assert f'filename="z.bin"; range="{rng}"'.encode() in req.content


def test_503_with_retry_after_is_retried_after_a_requery(make_engine):
    calls = {"query": 0, "chunk": 0}
    errors = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["content-type"].startswith("application/x-www-form-urlencoded"):
            calls["query"] += 1
            return _query_ok(request)
        request.read()
        calls["chunk"] += 1
        if calls["chunk"] == 1:
            return httpx.Response(503, headers={"Retry-After": "0"}, content=b"busy")
        return httpx.Response(200, content=uploader.format_ok(complete=True))

    engine = _mock(make_engine, handler, chunk_size=1000, journal=False)
    engine.subscribe(lambda e: e.kind == "error" and errors.append(e.snapshot.error))
    snap = engine.submit(bytes(500), "http://up.example/upload").wait(10, raise_on_error=True)
    engine.flush_events()
    assert snap.state is TaskState.DONE and calls == {"query": 2, "chunk": 2}
    assert errors and errors[0].status == 503 and errors[0].retryable


def test_redirects_are_not_followed_for_data(make_engine):
    chunks = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["content-type"].startswith("application/x-www-form-urlencoded"):
            return _query_ok(request)
        chunks.append(request.read())
        return httpx.Response(307, headers={"Location": "http://elsewhere.example/up"})

    engine = _mock(make_engine, handler, journal=False)
    snap = engine.submit(b"abc", "http://up.example/upload").wait(10)
    assert snap.state is TaskState.FAILED and not snap.error.retryable
    assert "http://elsewhere.example/up" in snap.error.message and len(chunks) == 1


def test_uploader_error_answer_with_200_is_a_failure(make_engine):

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["content-type"].startswith("application/x-www-form-urlencoded"):
            return _query_ok(request)
        request.read()
        return httpx.Response(200, content=b'{result:"ERROR",code:4008,message:"no .exe here"}')

    engine = _mock(make_engine, handler, journal=False)
    with pytest.raises(UploadFailed, match="4008") as info:
        nbupload.upload(b"MZ", "http://up.example/upload", engine=engine, wait=True)
    assert info.value.error.code == 4008 and not info.value.error.retryable


def test_configure_resizes_workers_and_rejects_unknown_settings(make_engine):
    gate = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        gate.wait(60)  # until the test has counted (a short wait here let a slow test see a third run)
        return httpx.Response(200, content=b"not json: plain mode")

    engine = _mock(make_engine, handler, journal=False)
    engine.configure(workers=2)
    tasks = [engine.submit(bytes(10), "http://up.example/u") for _ in range(4)]

    def running() -> int:
        return sum(t.state in (TaskState.CONNECTING, TaskState.UPLOADING) for t in tasks)

    wait_for(lambda: running() == 2)
    time.sleep(0.3)
    still = running()
    gate.set()
    for t in tasks:
        t.wait(10, raise_on_error=True)
    assert still == 2  # two workers, two tasks at a time
    with pytest.raises(TypeError, match="unknown engine setting"):
        engine.configure(speed=11)
    assert engine.config.workers == 2


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("X-Ünïcode", "1", "invalid header name 'X-Ünïcode'"),
        ("X Trace", "1", "invalid header name 'X Trace'"),
        ("X-Trace", "café-s3cr3t", "the value of header 'X-Trace' must be printable ASCII"),
        ("Authorization", "Bearer s3cr3t\r\nX-Evil: 1", "the value of header 'Authorization'"),
    ],
)
def test_a_header_http_cannot_carry_is_refused_at_submit_without_echoing_its_value(
    make_engine, name, value, says
):
    """Refused before any request (was a bare UnicodeEncodeError from deep in the transport,
    or a split request); the value may be a secret, so it is never in the message."""
    seen: list[httpx.Request] = []
    engine = _mock(make_engine, lambda r: seen.append(r) or httpx.Response(500))
    with pytest.raises(ValueError, match="header") as err:
        engine.submit(bytes(10), "http://up.example/upload", headers={name: value})
    assert says in str(err.value) and "s3cr3t" not in str(err.value) and "café" not in str(err.value)
    assert seen == [] and engine.tasks() == []
