"""The engine against the real reference server over loopback."""

from __future__ import annotations

import hashlib
import io
import time

import pytest

from nbupload.engine import TaskState, UploadFailed
from nbupload.protocols import wcs
from nbupload.server import start_server
from tests.support.helpers import CREDENTIALS, make_file, sha256_file, wait_for
from tests.support.servers import NonsenseQueryServer

AK, SK = next(iter(CREDENTIALS.items()))


def test_uploader_end_to_end_resumable(server, engine, tmp_path):
    src = make_file(tmp_path / "photo.jpg", 1_300_000)
    task = engine.submit(src, server.upload_url, fields={"album": "x"})
    snap = task.wait(30, raise_on_error=True)
    assert snap.state is TaskState.DONE and snap.acked == snap.total == 1_300_000
    assert snap.result["mode"] == "resumable"
    assert sha256_file(server.root / "photo.jpg") == sha256_file(src)
    stats = server.stats()["uploader"]
    assert stats["bytes"] == 1_300_000 and stats["duplicate_bytes"] == 0
    assert stats["requests"] == 1 + 5  # one query, ceil(1.3 MB / 256 KiB) chunks
    assert list(engine._journal.entries()) == []  # finished tasks leave no journal entry


def test_wcs_append_end_to_end_with_hash_check(server, engine, tmp_path):
    src = make_file(tmp_path / "data.bin", 1_000_000, seed=2)
    task = engine.submit(
        src,
        server.url,
        protocol="wcs-append",
        access_key=AK,
        secret_key=SK,
        scope="bucket",
        key="dir/data.bin",
    )
    snap = task.wait(30, raise_on_error=True)
    assert snap.result["verified"] and snap.result["hash"] == wcs.etag_of(src.read_bytes())
    assert sha256_file(server.root / "bucket" / "dir" / "data.bin") == sha256_file(src)
    assert server.stats()["wcs"]["requests"] == 4  # 1 MB in 256 KiB appends


def test_wcs_with_a_given_token_and_scoped_key(server, engine):
    data = b"hello, appendable world" * 1000
    token = wcs.make_token(AK, SK, wcs.PutPolicy("bkt:obj.txt", int(time.time() * 1000) + 600_000))
    snap = engine.submit(data, server.url, protocol="wcs-append", token=token).wait(30, raise_on_error=True)
    assert (server.root / "bkt" / "obj.txt").read_bytes() == data
    assert snap.result["key"] == "obj.txt"


def test_plain_protocol_and_in_memory_sources(server, engine):
    data = bytes(range(256)) * 3000
    t1 = engine.submit(data, server.upload_url, protocol="plain", filename="plain.bin")
    t2 = engine.submit(io.BytesIO(data), server.upload_url, filename="fileobj.bin")
    for t in (t1, t2):
        t.wait(30, raise_on_error=True)
        assert not t.persistent  # in-memory: resumable within this process only
    assert (server.root / "plain.bin").read_bytes() == data
    assert (server.root / "fileobj.bin").read_bytes() == data
    assert t1.result["mode"] == "plain"


def test_plain_fallback_when_the_query_answer_is_garbage(engine, tmp_path):
    src = make_file(tmp_path / "f.bin", 700_000, seed=3)
    with NonsenseQueryServer() as srv:
        task = engine.submit(src, srv.url)
        snap = task.wait(30, raise_on_error=True)
        assert srv.queries == 1 and len(srv.uploads) == 1
        data, disposition = srv.uploads[0]
        assert hashlib.sha256(data).hexdigest() == sha256_file(src)
        assert "range=" not in disposition
    assert snap.result["mode"] == "plain" and "unparseable" in task.driver_state.plain_reason


def test_eight_concurrent_tasks(server, make_engine, tmp_path):
    engine = make_engine(workers=4, chunk_size=128 << 10)
    files = [make_file(tmp_path / f"f{i}.bin", 400_000 + i * 7919, seed=i) for i in range(8)]
    seen_active: set[int] = set()
    engine.subscribe(lambda e: seen_active.add(sum(t.state is TaskState.UPLOADING for t in engine.tasks())))
    tasks = [engine.submit(f, server.upload_url) for f in files]
    for t in tasks:
        t.wait(60, raise_on_error=True)
    for f in files:
        assert sha256_file(server.root / f.name) == sha256_file(f)
    assert max(seen_active) <= 4  # the pool is bounded
    assert server.stats()["uploader"]["duplicate_bytes"] == 0


@pytest.mark.parametrize("streams", [1, 4])
def test_server_error_is_reported_with_code_and_not_retried(tmp_path, make_engine, streams):
    engine = make_engine(streams=streams)
    # 12 chunks of 256 KiB: more than the streams, so a stream that went on after the refusal
    # would show as more than one chunk request per stream.
    src = make_file(tmp_path / "big.bin", 3_000_000)
    with start_server(root=tmp_path / "r", max_file_size=500_000) as srv:
        task = engine.submit(src, srv.upload_url)
        with pytest.raises(UploadFailed) as info:
            task.wait(30, raise_on_error=True)
        requests = srv.stats()["uploader"]["requests"]
    err = info.value.error
    assert err.code == 4002 and err.status == 413 and not err.retryable
    assert "max_file_size" in str(err)
    attempts = task.snapshot().attempts
    # The query, then at most one chunk per stream (the chunks already in flight when the
    # refusal came back each get it too): never retried, no new chunk after the refusal.
    assert 2 <= attempts <= 1 + streams
    # a request cancelled when another stream got the refusal may never reach the server's count
    assert 2 <= requests <= attempts


def test_wrong_wcs_secret_fails_with_401_quickly(server, engine):
    task = engine.submit(
        b"x" * 1000,
        server.url,
        protocol="wcs-append",
        access_key=AK,
        secret_key="not-the-secret-xyz",
        scope="b:k",
    )
    snap = task.wait(30)
    assert snap.state is TaskState.FAILED and snap.error.status == 401
    assert snap.attempts <= 2  # one fresh token, then give up
    assert "not-the-secret" not in str(snap.error) and "not-the-secret" not in repr(task)


def test_pause_resume_and_progress_events(tmp_path, make_engine, chunk_gate):
    # requests held at the gate must not time out into retries before the pause (the states below)
    engine = make_engine(chunk_size=64 << 10, stall_timeout=60, read_timeout=60)
    src = make_file(tmp_path / "slow.bin", 1_000_000)
    events = []
    engine.subscribe(events.append)
    with start_server(root=tmp_path / "r", throttle=1_000_000) as srv:
        gate = chunk_gate(srv.url, passes=4)  # 256 KiB, then held: still unfinished at the pause
        task = engine.submit(src, gate.upload_url)
        wait_for(lambda: task.acked >= 200_000)
        task.pause()
        snap = task.wait(30)
        assert snap.state is TaskState.PAUSED
        held = snap.acked
        gate.open()
        task.resume()
        task.wait(30, raise_on_error=True)
        assert sha256_file(srv.root / "slow.bin") == sha256_file(src)
        # a pause drops the chunk each stream has in flight (chunk_max pinned at 64 KiB)
        assert srv.stats()["uploader"]["bytes"] - src.stat().st_size <= engine.config.streams * (64 << 10)
    engine.flush_events()
    mine = [e for e in events if e.snapshot.id == task.id]
    states = [e.snapshot.state.value for e in mine if e.kind == "state"]
    assert states == [
        "queued",
        "connecting",
        "uploading",
        "paused",
        "queued",
        "connecting",
        "uploading",
        "done",
    ]
    acked = [e.snapshot.acked for e in mine]
    assert acked == sorted(acked) and held > 0  # acked never goes backwards
    progress = [e for e in mine if e.kind == "progress"]
    duration = (
        mine[-1].snapshot.finished_at - mine[0].snapshot.started_at if mine[0].snapshot.started_at else 2
    )
    assert len(progress) <= 12 * max(duration, 1) + 4  # coalesced to ~10 per second
    assert any(e.snapshot.rate > 0 for e in progress)


@pytest.mark.parametrize("how", ["at once", "after 0.3 s", "resume all"])
def test_resume_right_after_pause_does_not_end_paused(tmp_path, make_engine, chunk_gate, how):
    # At once: resume() withdraws a pause the worker has not seen yet. After 0.3 s: the
    # worker has usually acted on it and the task is queued again. "resume all" must take a
    # task whose pause is still pending.
    engine = make_engine(chunk_size=64 << 10)
    src = make_file(tmp_path / "slow.bin", 600_000)
    with start_server(root=tmp_path / "r", throttle=1_000_000) as srv:
        gate = chunk_gate(srv.url, passes=2)  # 128 KiB, then held: still unfinished at the pause
        task = engine.submit(src, gate.upload_url)
        wait_for(lambda: task.acked >= 100_000)
        task.pause()
        assert task.can_resume
        if how == "resume all":
            assert task in engine.resume()
        else:
            time.sleep(0.3 if how == "after 0.3 s" else 0.0)
            task.resume()
        gate.open()  # what it held is cut: sent again
        snap = task.wait(30)
        assert snap.state is TaskState.DONE, snap
        assert not task.can_resume
        assert sha256_file(srv.root / "slow.bin") == sha256_file(src)


def test_cancel_is_prompt(tmp_path, make_engine, chunk_gate):
    engine = make_engine(chunk_size=4 << 20)
    src = make_file(tmp_path / "c.bin", 3_000_000)
    with start_server(root=tmp_path / "r", throttle=500_000) as srv:
        gate = chunk_gate(srv.url, passes=0)  # the one chunk is held: no answer before the cancel
        task = engine.submit(src, gate.upload_url)
        wait_for(lambda: task.sent >= 300_000)
        t0 = time.monotonic()
        task.cancel()
        snap = task.wait(10)
        latency = time.monotonic() - t0
        print(f"\ncancel latency: {latency * 1000:.0f} ms (one 3 MB chunk in flight, held unanswered)")
        assert snap.state is TaskState.CANCELLED
        assert not (srv.root / "c.bin").exists()
    assert engine._journal.read(task.id) is None


@pytest.mark.parametrize("protocol", ["uploader", "plain", "wcs-append"])
def test_empty_file(server, engine, tmp_path, protocol):
    src = tmp_path / "empty.txt"
    src.write_bytes(b"")
    wcs_opts = dict(access_key=AK, secret_key=SK, scope="b:empty.txt") if protocol == "wcs-append" else {}
    url = server.url if wcs_opts else server.upload_url
    snap = engine.submit(src, url, protocol=protocol, **wcs_opts).wait(30, raise_on_error=True)
    stored = server.root / ("b/empty.txt" if wcs_opts else "empty.txt")
    assert snap.fraction == 1.0 and stored.exists() and stored.stat().st_size == 0


def test_a_task_chunk_max_pins_its_chunks_whatever_the_engine_allows(tmp_path, make_engine, server):
    engine = make_engine(chunk_max=64 << 20)  # the engine would let chunks grow to 64 MiB
    src = make_file(tmp_path / "pinned.bin", 1_000_000)
    with pytest.raises(ValueError, match="chunk_max"):
        engine.submit(src, server.upload_url, chunk_max=0)
    snap = engine.submit(src, server.upload_url, chunk_size=65536, chunk_max=65536).wait(
        60, raise_on_error=True
    )
    assert snap.chunk_size == 65536
    assert sha256_file(server.root / "pinned.bin") == sha256_file(src)
    assert server.stats()["uploader"]["requests"] == 1 + 16  # the query, ceil(1000000 / 65536) chunks
