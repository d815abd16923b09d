"""Faults between the engine and the real server: cut connections, lost answers, stalls."""

from __future__ import annotations

from nbupload.engine import TaskState
from tests.support.helpers import CREDENTIALS, make_file, sha256_file, wait_for
from tests.support.proxy import Fault, FaultProxy

AK, SK = next(iter(CREDENTIALS.items()))
CHUNK = 256 << 10


def _errors(engine):
    seen = []
    engine.subscribe(lambda e: e.kind == "error" and seen.append(e.snapshot.error))
    return seen


def test_cut_connection_mid_chunk_requeries_and_finishes(server, engine, tmp_path):
    src = make_file(tmp_path / "cut.bin", 1_000_000)
    errors = _errors(engine)
    with FaultProxy.for_url(server.url) as proxy:
        proxy.add(Fault(cut_after=400_000))  # in the middle of the second chunk
        # one stream: the fault's offset counts one connection's bytes (several streams: test_engine_streams)
        task = engine.submit(src, proxy.url + "/upload", streams=1)
        task.wait(30, raise_on_error=True)
        assert proxy.counters.cuts == 1
    engine.flush_events()
    assert sha256_file(server.root / "cut.bin") == sha256_file(src)
    stats = server.stats()["uploader"]
    assert stats["duplicate_bytes"] == 0
    assert stats["bytes"] - src.stat().st_size <= CHUNK  # at most the cut chunk again
    assert errors and errors[0].retryable and "connection" in errors[0].message.lower()


def test_swallowed_chunk_answer_is_not_resent(server, engine, tmp_path):
    src = make_file(tmp_path / "lost.bin", 1_000_000)
    with FaultProxy.for_url(server.url) as proxy:
        proxy.add(Fault(swallow_after=600_000))  # the server applies chunk 3, we never hear
        task = engine.submit(src, proxy.url + "/upload", streams=1)
        task.wait(30, raise_on_error=True)
        assert proxy.counters.swallowed == 1
    assert sha256_file(server.root / "lost.bin") == sha256_file(src)
    stats = server.stats()["uploader"]
    # The re-query told us the server held that chunk: no byte was sent twice.
    assert stats["bytes"] == src.stat().st_size and stats["duplicate_bytes"] == 0


def test_lost_wcs_append_answer_duplicates_nothing(server, engine, tmp_path):
    src = make_file(tmp_path / "obj.bin", 1_000_000, seed=5)
    errors = _errors(engine)
    with FaultProxy.for_url(server.url) as proxy:
        proxy.add(Fault(swallow_after=400_000))  # the 2nd append lands; its answer is lost
        task = engine.submit(
            src, proxy.url, protocol="wcs-append", access_key=AK, secret_key=SK, scope="bkt", key="obj.bin"
        )
        snap = task.wait(30, raise_on_error=True)
        assert proxy.counters.swallowed == 1
    engine.flush_events()
    stored = server.root / "bkt" / "obj.bin"
    assert stored.stat().st_size == src.stat().st_size  # nothing appended twice
    assert sha256_file(stored) == sha256_file(src)
    assert snap.result["verified"] and errors  # recovered through B5 replay, hash checked


def test_lost_last_wcs_answer_is_verified_by_an_empty_append(server, engine, tmp_path):
    src = make_file(tmp_path / "last.bin", 300_000, seed=6)
    with FaultProxy.for_url(server.url) as proxy:
        proxy.add(Fault(swallow_after=290_000))  # the last (2nd) append's answer is lost
        task = engine.submit(
            src, proxy.url, protocol="wcs-append", access_key=AK, secret_key=SK, scope="bkt:last.bin"
        )
        snap = task.wait(30, raise_on_error=True)
    assert sha256_file(server.root / "bkt" / "last.bin") == sha256_file(src)
    assert snap.result["verified"]


def test_stall_watchdog_restarts_the_request(server, make_engine, tmp_path):
    engine = make_engine(stall_timeout=1.0)
    src = make_file(tmp_path / "stall.bin", 800_000)
    with FaultProxy.for_url(server.url) as proxy:
        # The stall outlasts the wait below: only the watchdog's new request can finish in time.
        proxy.add(Fault(stall_after=300_000, stall_for=120.0))
        task = engine.submit(src, proxy.url + "/upload", streams=1)
        snap = task.wait(30, raise_on_error=True)
        assert proxy.counters.stalls == 1
    assert snap.state is TaskState.DONE
    # The server assembles the file once the abandoned request's connection is gone too.
    wait_for((server.root / "stall.bin").exists, timeout=60)
    assert sha256_file(server.root / "stall.bin") == sha256_file(src)


def test_server_down_gives_up_after_retries(make_engine, tmp_path):
    engine = make_engine(retries=2)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    task = engine.submit(b"abc", f"http://127.0.0.1:{port}/upload")
    snap = task.wait(30)
    assert snap.state is TaskState.FAILED and "gave up after 3 tries" in snap.error.message
    assert snap.attempts == 3
