"""Multi-file uploader sessions (PROTOCOLS.md A7) against the real reference server over loopback:
several file fields under one boundary, one task, resumed as a whole."""

from __future__ import annotations

import hashlib
import json
import math

import httpx
import pytest

import nbupload
from nbupload.engine import TaskState
from nbupload.errors import FileFieldError
from nbupload.protocols import uploader
from nbupload.protocols.ranges import RangeSet, parse_range_attr
from nbupload.server import start_server
from tests.support.helpers import CREDENTIALS, make_file, sha256_file, wait_for
from tests.support.proxy import Fault, FaultProxy
from tests.support.servers import NonsenseQueryServer, file_part

CHUNK = 256 << 10
AK, SK = next(iter(CREDENTIALS.items()))


@pytest.fixture
def slow_server(tmp_path):
    with start_server(root=tmp_path / "root", throttle=1_000_000) as srv:
        yield srv


def _held(url: str, boundary: str) -> dict[str, RangeSet]:
    """What the server says it holds of each field of session ``boundary`` (its own query)."""
    headers, body = uploader.prepare_query(boundary)
    reply = httpx.post(url, headers=headers, content=body, timeout=30)
    answer = uploader.process_query_answer(reply.status_code, reply.content, boundary)
    assert answer.resumable
    return dict(answer.held)


@pytest.mark.parametrize(
    "sizes",
    [
        {"photo": 1_000_000, "doc": 3_000},  # many chunks, one chunk
        {"photo": 0, "doc": 200_000, "data": 1_300_000},  # zero bytes, one chunk, many chunks
    ],
    ids=["two-fields", "three-fields"],
)
def test_every_field_lands_intact_under_its_name(server, engine, tmp_path, sizes):
    paths = {
        name: make_file(tmp_path / f"{name}.bin", size, seed=i)
        for i, (name, size) in enumerate(sizes.items())
    }
    task = engine.submit({k: str(v) for k, v in paths.items()}, server.upload_url, fields={"album": "x"})
    snap = task.wait(60, raise_on_error=True)
    total = sum(sizes.values())
    assert snap.state is TaskState.DONE and snap.total == snap.acked == total
    assert snap.result["mode"] == "resumable" and snap.result["complete"] is True
    for name, path in paths.items():
        assert sha256_file(server.root / path.name) == sha256_file(path)
        outcome = snap.result["files"][name]
        assert outcome["filename"] == path.name and outcome["size"] == sizes[name]
        assert outcome["complete"] is True and outcome["stored"] == path.name
    stats = server.stats()["uploader"]
    assert stats["bytes"] == total and stats["duplicate_bytes"] == 0 and stats["completed"] == len(sizes)
    chunks = sum(max(1, math.ceil(n / CHUNK)) for n in sizes.values())  # a zero-byte field: one empty chunk
    assert stats["requests"] == 1 + chunks  # one query for the whole session
    assert not list((tmp_path / "journal").glob("*.json"))


def test_chunks_of_different_fields_interleave_and_pause_resumes_the_whole_session(
    slow_server, make_engine, tmp_path, chunk_gate
):
    small = 64 << 10
    engine = make_engine(chunk_size=small, streams=2)
    a = make_file(tmp_path / "a.bin", 2_000_000, seed=1)
    b = make_file(tmp_path / "b.bin", 2_000_000, seed=2)
    gate = chunk_gate(slow_server.url, passes=16)  # 1 MiB, then held: still unfinished at the pause
    task = engine.submit({"a": str(a), "b": str(b)}, gate.upload_url)
    wait_for(lambda: task.acked >= 1_000_000, timeout=60)
    task.pause()
    assert task.wait(60).state is TaskState.PAUSED
    # A quarter of the session's bytes are acknowledged: the server holds bytes of both fields
    # (one after the other would have held half of a and nothing of b).
    held = _held(slow_server.upload_url, task.spec.boundary)
    print(f"\nat pause: a holds {held['a'].covered()}, b holds {held['b'].covered()} bytes")
    assert held["a"].covered() > 0 and held["b"].covered() > 0
    gate.open()
    task.resume()
    snap = task.wait(60, raise_on_error=True)
    assert snap.acked == snap.total == 4_000_000
    assert sha256_file(slow_server.root / "a.bin") == sha256_file(a)
    assert sha256_file(slow_server.root / "b.bin") == sha256_file(b)
    stats = slow_server.stats()["uploader"]
    assert stats["duplicate_bytes"] == 0  # nothing a field held went again
    assert stats["bytes"] - 4_000_000 <= 2 * small  # at most the chunks the pause cut, one per stream


def test_cut_connection_requeries_and_finishes_every_field(server, make_engine, tmp_path):
    engine = make_engine(streams=2)
    a = make_file(tmp_path / "a.bin", 900_000, seed=1)
    b = make_file(tmp_path / "b.bin", 700_000, seed=2)
    with FaultProxy.for_url(server.url) as proxy:
        proxy.add(Fault(), Fault(cut_after=150_000))  # the second stream's connection, mid-chunk
        task = engine.submit({"a": str(a), "b": str(b)}, proxy.url + "/upload")
        task.wait(60, raise_on_error=True)
        assert proxy.counters.cuts == 1
    assert sha256_file(server.root / "a.bin") == sha256_file(a)
    assert sha256_file(server.root / "b.bin") == sha256_file(b)
    stats = server.stats()["uploader"]
    assert stats["duplicate_bytes"] == 0
    assert stats["bytes"] - 1_600_000 <= CHUNK  # at most the cut chunk again


def test_restart_resumes_each_field_from_the_journal(slow_server, make_engine, tmp_path, chunk_gate):
    first = make_engine(streams=2)
    a = make_file(tmp_path / "a.bin", 2_000_000, seed=1)
    b = make_file(tmp_path / "b.bin", 1_000_000, seed=2)
    empty = make_file(tmp_path / "e.bin", 0)
    # three chunks (one may be e's empty one), then held: still unfinished at the shutdown
    gate = chunk_gate(slow_server.url, passes=3)
    task = first.submit({"a": str(a), "b": str(b), "e": str(empty)}, gate.upload_url, fields={"k": "v"})
    assert task.persistent
    wait_for(lambda: task.acked >= 2 * CHUNK, timeout=60)
    first.shutdown(wait=True, timeout=30)  # what a kernel restart leaves: the journal entry
    gate.open()
    entry = json.loads((tmp_path / "journal" / f"{task.id}.json").read_text())
    assert [f["name"] for f in entry["files"]] == ["a", "b", "e"]
    assert [f["size"] for f in entry["files"]] == [2_000_000, 1_000_000, 0]
    assert entry["files"][0]["source"]["path"] == str(a)
    held = _held(slow_server.upload_url, entry["boundary"])
    for f in entry["files"]:  # the journal never claims a byte the server lacks
        journaled = RangeSet.parse(f["ranges"])
        assert (journaled | held.get(f["name"], RangeSet())) == held.get(f["name"], RangeSet())
    assert sum(RangeSet.parse(f["ranges"]).covered() for f in entry["files"]) == entry["acked"] > 0

    second = make_engine(streams=2)
    (again,) = second.resume(task.id)
    assert again.spec.files == task.spec.files and again.spec.boundary == task.spec.boundary
    snap = again.wait(60, raise_on_error=True)
    assert snap.result["files"]["e"]["complete"] and set(snap.result["files"]) == {"a", "b", "e"}
    for p in (a, b, empty):
        assert sha256_file(slow_server.root / p.name) == sha256_file(p)
    stats = slow_server.stats()["uploader"]
    # A chunk whose request was cut at the shutdown may still be landing at the server when the
    # second engine asks what it holds: sent again, at most one chunk per stream.
    assert stats["duplicate_bytes"] <= 2 * CHUNK
    assert stats["bytes"] - 3_000_000 <= 2 * CHUNK  # at most the chunks cut by the shutdown


def test_plain_fallback_sends_every_file_and_the_fields_in_one_request(engine, tmp_path):
    paths = {
        "photo": make_file(tmp_path / "p.jpg", 700_000, seed=3),
        "doc": make_file(tmp_path / "d.pdf", 1_000, seed=4),
        "none": make_file(tmp_path / "n.txt", 0),
    }
    with NonsenseQueryServer() as srv:
        task = engine.submit({k: str(v) for k, v in paths.items()}, srv.url, fields={"user": "ann"})
        snap = task.wait(30, raise_on_error=True)
        assert srv.queries == 1 and len(srv.bodies) == 1
        body, boundary = srv.bodies[0]
        for name, path in paths.items():
            data, disposition = file_part(body, boundary, name)
            assert hashlib.sha256(data).hexdigest() == sha256_file(path)
            assert f'filename="{path.name}"' in disposition and "range=" not in disposition
        assert b'name="user"\r\n\r\nann\r\n' in body
    assert snap.result["mode"] == "plain" and set(snap.result["files"]) == set(paths)
    assert "unparseable" in task.driver_state.plain_reason


def test_forced_plain_session_lands_every_field_on_the_reference_server(server, engine, tmp_path):
    a = make_file(tmp_path / "a.bin", 600_000, seed=1)
    b = make_file(tmp_path / "b.bin", 5, seed=2)
    snap = engine.submit({"a": str(a), "b": str(b)}, server.upload_url, protocol="plain").wait(
        30, raise_on_error=True
    )
    assert sha256_file(server.root / "a.bin") == sha256_file(a)
    assert sha256_file(server.root / "b.bin") == sha256_file(b)
    assert server.stats()["uploader"]["requests"] == 1
    assert snap.result["files"]["a"]["stored"] == "a.bin" and snap.result["files"]["b"]["stored"] == "b.bin"


def test_a_refused_field_fails_the_session_naming_the_field(tmp_path, engine):
    ok = make_file(tmp_path / "ok.bin", 1_000)
    bad = make_file(tmp_path / "evil.exe", 1_000)
    with start_server(root=tmp_path / "root", deny_extensions=[".exe"]) as srv:
        snap = engine.submit({"ok": str(ok), "bin": str(bad)}, srv.upload_url).wait(30)
    assert snap.state is TaskState.FAILED
    assert snap.error.code == 4008 and "field 'bin' (evil.exe)" in str(snap.error)


def test_cancel_forgets_the_whole_session(slow_server, make_engine, tmp_path, chunk_gate):
    engine = make_engine(chunk_size=64 << 10)
    a = make_file(tmp_path / "a.bin", 2_000_000, seed=1)
    b = make_file(tmp_path / "b.bin", 2_000_000, seed=2)
    gate = chunk_gate(slow_server.url, passes=1)  # one chunk, then held: still unfinished at the cancel
    task = engine.submit({"a": str(a), "b": str(b)}, gate.upload_url)
    wait_for(lambda: task.acked > 0, timeout=60)
    task.cancel()
    assert task.wait(60).state is TaskState.CANCELLED
    assert not list((tmp_path / "journal").glob("*.json"))


def test_chunk_requests_carry_one_fields_range_and_the_data_fields(make_engine, tmp_path):
    """Request shapes (httpx.MockTransport): the query answer's per-field ranges decide what
    goes; each chunk is one file part of one field, with the data fields."""
    a = make_file(tmp_path / "a.bin", 600, seed=1)
    b = make_file(tmp_path / "b.bin", 300, seed=2)
    seen: list[tuple[str, int, int, int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = request.read()
        if request.headers["content-type"].startswith("application/x-www-form-urlencoded"):
            boundary = uploader.parse_query_request(body)
            held = {"a": RangeSet([(0, 400)]), "b": RangeSet([(100, 300)])}
            return httpx.Response(200, content=uploader.format_query_answer(boundary, held))
        boundary = request.headers["content-type"].split("boundary=", 1)[1]
        assert body.count(b'filename="') == 1  # exactly one file part per chunk
        assert b'name="k"\r\n\r\nv\r\n' in body  # data fields in every chunk
        name = "a" if b'name="a"; filename="a.bin"' in body else "b"
        data, disposition = file_part(body, boundary, name)
        start, end, total = parse_range_attr(disposition.split('range="', 1)[1].split('"', 1)[0])
        assert data == (a if name == "a" else b).read_bytes()[start:end]
        seen.append((name, start, end, total))
        return httpx.Response(200, content=b'{result:"OK",complete:true}')

    engine = make_engine(transport=httpx.MockTransport(handler), chunk_size=150, chunk_max=150, streams=1)
    snap = engine.submit({"a": str(a), "b": str(b)}, "http://upload.test/up", fields={"k": "v"}).wait(30)
    assert snap.state is TaskState.DONE, snap.error
    assert sorted(seen) == [("a", 400, 550, 600), ("a", 550, 600, 600), ("b", 0, 100, 300)]


@pytest.mark.parametrize(
    ("source", "options", "match"),
    [
        ({"a": "missing.bin"}, {}, r"field 'a': no such file"),
        ({"a b": "f.bin"}, {}, "not a usable form field name"),
        ({}, {}, "at least one"),
        (
            {"a": "f.bin"},
            {"protocol": "wcs-append", "access_key": AK, "secret_key": SK, "scope": "b"},
            "wcs-append",
        ),
        ({"a": "f.bin"}, {"filename": "x"}, "filename names one file"),
        ({"a": "f.bin"}, {"name": "upfile"}, "the field names are the mapping's keys"),
        ({"a": "f.bin", "b": "f.bin"}, {"fields": {"b": "1"}}, "both a file field and a data field"),
    ],
)
def test_clear_errors_for_sessions_that_cannot_go(engine, tmp_path, monkeypatch, source, options, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.bin").write_bytes(b"x")
    with pytest.raises(FileFieldError, match=match):
        engine.submit(source, "http://127.0.0.1:9/upload", **options)
    with pytest.raises(nbupload.NbuploadError):  # the API says the same
        nbupload.upload(source, "http://127.0.0.1:9/upload", engine=engine, **options)
    assert engine.tasks() == []


def test_retry_after_a_failure_resumes_the_whole_session(server, make_engine, tmp_path):
    engine = make_engine(retries=0, streams=1)  # the first failure fails the task
    a = make_file(tmp_path / "a.bin", 900_000, seed=1)
    b = make_file(tmp_path / "b.bin", 300_000, seed=2)
    with FaultProxy.for_url(server.url) as proxy:
        proxy.add(Fault(cut_after=500_000))  # mid-way through the session's second chunk
        task = engine.submit({"a": str(a), "b": str(b)}, proxy.url + "/upload")
        snap = task.wait(60)
        assert snap.state is TaskState.FAILED and snap.error.retryable
        assert 0 < snap.acked < snap.total
        task.retry()
        snap = task.wait(60, raise_on_error=True)
    assert set(snap.result["files"]) == {"a", "b"}
    assert sha256_file(server.root / "a.bin") == sha256_file(a)
    assert sha256_file(server.root / "b.bin") == sha256_file(b)
    stats = server.stats()["uploader"]
    assert stats["duplicate_bytes"] == 0 and stats["bytes"] - 1_200_000 <= CHUNK


def test_a_file_changed_before_the_resume_fails_the_session_naming_it(
    slow_server, make_engine, tmp_path, chunk_gate
):
    first = make_engine()
    a = make_file(tmp_path / "a.bin", 2_000_000, seed=1)
    b = make_file(tmp_path / "b.bin", 1_000_000, seed=2)
    gate = chunk_gate(slow_server.url, passes=1)  # one chunk, then held: still unfinished at the shutdown
    task = first.submit({"a": str(a), "b": str(b)}, gate.upload_url)
    wait_for(lambda: task.acked > 0, timeout=60)
    first.shutdown(wait=True, timeout=30)
    gate.open()
    b.write_bytes(b"another version")
    (again,) = make_engine().resume(task.id)
    snap = again.wait(60)
    assert snap.state is TaskState.FAILED and snap.error.code == "source-changed"
    assert str(b) in snap.error.message and "changed since the upload started" in snap.error.message
