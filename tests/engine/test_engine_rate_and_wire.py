"""The body-sending path: file bytes go out with ``sendfile`` on plain HTTP, and the rate
caps (a task's ``limit_rate``, the engine's ``max_rate``) hold, against the real reference
server over loopback. The rate figures are upper bounds with slack (a cap is a correctness
bound); how close to the cap an upload gets is a benchmark figure, never asserted here."""

from __future__ import annotations

import os
import threading
import time
import types

import pytest

from nbupload.engine import TaskState, wire
from nbupload.engine.drivers import ChunkSizer
from nbupload.engine.ratelimit import SharedCap, Throttle, TokenBucket
from nbupload.engine.transport import Reply
from nbupload.protocols import wcs
from tests.support.helpers import CREDENTIALS, make_file, sha256_file, wait_for
from tests.support.servers import QuietHandler, StandInServer, file_part

KiB, MiB = 1 << 10, 1 << 20


@pytest.fixture
def sendfile_bytes(monkeypatch):
    """Counts the bytes ``os.sendfile`` moved for the wire module (and still moves them)."""
    seen = {"bytes": 0}
    lock = threading.Lock()

    def counting(out: int, fd: int, offset: int, count: int) -> int:
        n = os.sendfile(out, fd, offset, count)
        with lock:
            seen["bytes"] += n
        return n

    monkeypatch.setattr(wire, "os", types.SimpleNamespace(sendfile=counting))
    return seen


@pytest.mark.parametrize("protocol", ["uploader", "plain"])
def test_file_bytes_go_out_with_sendfile_on_plain_http(
    server, make_engine, tmp_path, sendfile_bytes, protocol
):
    engine = make_engine(chunk_size=1 * MiB, streams=3)
    src = make_file(tmp_path / "z.bin", 5 * MiB + 12_345)
    snap = engine.submit(src, server.upload_url, protocol=protocol).wait(60, raise_on_error=True)
    assert snap.state is TaskState.DONE and sha256_file(server.root / "z.bin") == sha256_file(src)
    assert sendfile_bytes["bytes"] == src.stat().st_size  # every file byte, none copied through Python
    assert snap.attempts == (1 if protocol == "plain" else 1 + 6)  # the query, 6 chunks; no retry


@pytest.mark.parametrize("protocol", ["uploader", "plain"])
def test_a_multi_file_session_goes_out_with_sendfile_and_arrives_whole(
    server, make_engine, tmp_path, sendfile_bytes, protocol
):
    engine = make_engine(chunk_size=1 * MiB, streams=3)
    files = {
        "a": make_file(tmp_path / "a.bin", 3 * MiB + 5, seed=1),
        "b": make_file(tmp_path / "b.bin", 0, seed=2),
        "c": make_file(tmp_path / "c.bin", 2 * MiB + 777, seed=3),
    }
    task = engine.submit({k: str(v) for k, v in files.items()}, server.upload_url, protocol=protocol)
    snap = task.wait(60, raise_on_error=True)
    assert snap.state is TaskState.DONE and snap.result["mode"] == protocol.replace("uploader", "resumable")
    for path in files.values():
        assert sha256_file(server.root / path.name) == sha256_file(path)
    # every file byte of every field through sendfile, none copied through Python
    assert sendfile_bytes["bytes"] == sum(p.stat().st_size for p in files.values())


def test_an_in_memory_field_is_read_and_a_file_field_beside_it_still_goes_by_sendfile(
    server, make_engine, tmp_path, sendfile_bytes
):
    engine = make_engine(chunk_size=1 * MiB, streams=2)
    on_disk = make_file(tmp_path / "disk.bin", 2 * MiB + 3, seed=4)
    in_memory = os.urandom(1 * MiB + 11)  # no descriptor: the read path
    task = engine.submit({"disk": str(on_disk), "mem": in_memory}, server.upload_url)
    snap = task.wait(60, raise_on_error=True)
    assert snap.state is TaskState.DONE and snap.result["files"]["mem"]["complete"] is True
    assert sha256_file(server.root / "disk.bin") == sha256_file(on_disk)
    assert (server.root / snap.result["files"]["mem"]["stored"]).read_bytes() == in_memory
    assert sendfile_bytes["bytes"] == on_disk.stat().st_size  # the in-memory field's bytes were read


def test_wcs_bytes_are_read_for_the_etag_and_still_arrive_whole(
    server, make_engine, tmp_path, sendfile_bytes
):
    ak, sk = next(iter(CREDENTIALS.items()))
    engine = make_engine(chunk_size=1 * MiB)
    src = make_file(tmp_path / "w.bin", 3 * MiB + 7)
    snap = engine.submit(
        src, server.url, protocol="wcs-append", access_key=ak, secret_key=sk, scope="bkt:w.bin"
    ).wait(60, raise_on_error=True)
    assert snap.result["verified"] and snap.result["hash"] == wcs.etag_of(src.read_bytes())
    assert sendfile_bytes["bytes"] == 0  # the etag needs the bytes: read, then sent
    assert sha256_file(server.root / "bkt" / "w.bin") == sha256_file(src)


def _rate(nbytes: int, began: float) -> float:
    return nbytes / (time.monotonic() - began)


def test_a_task_limit_rate_caps_all_its_streams(server, make_engine, tmp_path):
    cap = 1_000_000  # bytes/s; 3 MB takes about 3 s at the cap
    engine = make_engine(chunk_size=256 * KiB, streams=4)
    src = make_file(tmp_path / "capped.bin", 3_000_000)
    began = time.monotonic()
    snap = engine.submit(src, server.upload_url, limit_rate=cap).wait(120, raise_on_error=True)
    rate = _rate(src.stat().st_size, began)
    assert snap.state is TaskState.DONE and sha256_file(server.root / "capped.bin") == sha256_file(src)
    assert rate <= cap * 1.1, f"{rate:.0f} B/s over a cap of {cap} B/s"


def test_the_engine_max_rate_is_shared_by_all_tasks(server, make_engine, tmp_path):
    cap = 1_000_000
    engine = make_engine(chunk_size=256 * KiB, streams=2, max_rate=cap)
    srcs = [make_file(tmp_path / f"s{i}.bin", 1_500_000 + i) for i in range(2)]
    began = time.monotonic()
    tasks = [engine.submit(s, server.upload_url) for s in srcs]
    for t in tasks:
        t.wait(120, raise_on_error=True)
    rate = _rate(sum(s.stat().st_size for s in srcs), began)
    for s in srcs:
        assert sha256_file(server.root / s.name) == sha256_file(s)
    assert rate <= cap * 1.1, f"{rate:.0f} B/s over a cap of {cap} B/s"


def test_a_throttled_upload_pauses_and_resumes_and_the_cap_can_be_lifted(
    server, make_engine, tmp_path, chunk_gate
):
    engine = make_engine(chunk_size=256 * KiB, streams=2, max_rate=200_000)
    src = make_file(tmp_path / "slow.bin", 2_000_000)
    gate = chunk_gate(server.url, passes=1)  # one chunk, then held: still unfinished at the pause
    task = engine.submit(src, gate.upload_url)
    wait_for(lambda: task.acked >= 256 * KiB, timeout=60)
    task.pause()
    assert task.wait(60).state is TaskState.PAUSED
    gate.open()
    engine.configure(max_rate=None)  # no cap: the rest goes at full speed
    task.resume()
    snap = task.wait(60, raise_on_error=True)
    assert snap.state is TaskState.DONE and sha256_file(server.root / "slow.bin") == sha256_file(src)


def test_token_bucket_debt_keeps_the_long_run_rate_at_the_cap():
    now = [0.0]
    bucket = TokenBucket(1000.0, clock=lambda: now[0])
    burst = bucket.burst
    assert bucket.debit(int(burst)) == 0.0  # the burst allowance goes at once
    wait = bucket.debit(500)  # then a debt: 500 bytes at 1000 B/s
    assert wait == pytest.approx(0.5)
    now[0] += wait
    assert bucket.debit(1000) == pytest.approx(1.0)  # nothing saved up while paying the debt
    now[0] += 100.0
    assert bucket.debit(int(burst)) == 0.0  # idle time refills to the burst, no further
    assert bucket.debit(1) > 0.0


def test_shared_cap_can_change_under_a_throttle():
    shared = SharedCap(None)
    throttle = Throttle(None, shared)
    assert throttle.buckets == []
    throttle.take(10 * MiB, lambda: None)  # no cap: no wait
    shared.set(2_000_000)
    assert [b.rate for b in throttle.buckets] == [2_000_000]
    assert throttle.piece_limit() == 100_000  # a twentieth of a second's worth
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_take_checks_the_task_flags_while_waiting():
    throttle = Throttle(TokenBucket(1000.0), None)
    throttle.take(int(throttle.buckets[0].burst), lambda: None)

    class Paused(Exception):
        pass

    def check():
        raise Paused

    with pytest.raises(Paused):
        throttle.take(10_000, check)  # a 10 s wait ends at the first check


def _reply(seconds: float, body_seconds: float) -> Reply:
    return Reply(200, None, b"", seconds=seconds, body_seconds=body_seconds)  # type: ignore[arg-type]


def test_chunks_grow_by_more_than_double_when_the_answer_wait_dominates():
    sizer = ChunkSizer(4 * MiB, 64 * MiB)
    sizer.ok(4 * MiB, _reply(0.043, 0.003))  # 40 ms answer wait after a 3 ms body
    assert sizer.size == 32 * MiB  # at most 8x at once
    sizer.ok(32 * MiB, _reply(0.064, 0.024))
    assert sizer.size == 64 * MiB  # the cap
    slow_link = ChunkSizer(4 * MiB, 64 * MiB)
    slow_link.ok(4 * MiB, _reply(0.14, 0.1))  # overhead 29 %: just over the share, doubles
    assert slow_link.size == 8 * MiB
    slow_link.ok(8 * MiB, _reply(0.24, 0.2))  # overhead 17 %: stays
    assert slow_link.size == 8 * MiB


def test_chunks_stop_growing_once_they_last_seconds():
    # a slow link behind a buffering proxy: the chunk left at once and the whole request looks
    # like answer wait; growth stops at about MAX_SECONDS (1 s) of the link
    sizer = ChunkSizer(128 * KiB, 64 * MiB)
    sizer.ok(128 * KiB, _reply(0.15, 0.0))  # about 0.85 MiB/s
    assert sizer.size == 512 * KiB  # 4x (0.6 s); 8x would last 1.2 s
    sizer.ok(512 * KiB, _reply(0.6, 0.0))
    assert sizer.size == 512 * KiB  # twice as big would last 1.2 s: stays
    far = ChunkSizer(16 * MiB, 64 * MiB)  # 40 MB/s, 80 ms round trip: a query took 0.1 s
    far.round_trip(0.1)
    far.ok(16 * MiB, _reply(0.6, 0.4))
    assert far.size == 32 * MiB  # 1.2 s: over 1 s, but 20 round trips (2 s) allow it
    far.ok(32 * MiB, _reply(1.0, 0.7))
    assert far.size == 64 * MiB
    fast = ChunkSizer(4 * MiB, 64 * MiB)
    fast.ok(4 * MiB, _reply(0.2, 0.1))
    assert fast.size == 16 * MiB  # a fast link still grows (4x: 0.8 s at most)


def test_short_requests_grow_whatever_their_overhead_share():
    # a loopback server: a 4 MiB chunk in 5 ms, 1 ms of it the answer (20 %, under the share)
    sizer = ChunkSizer(4 * MiB, 64 * MiB)
    sizer.ok(4 * MiB, _reply(0.005, 0.004))
    assert sizer.size == 32 * MiB  # 8x: 40 ms, still under SHORT_SECONDS (0.1 s)
    sizer.ok(32 * MiB, _reply(0.03, 0.028))
    assert sizer.size == 64 * MiB  # 2x (the cap): 4x would be 0.12 s
    lan = ChunkSizer(4 * MiB, 64 * MiB)
    lan.ok(4 * MiB, _reply(0.06, 0.055))  # 60 ms, 8 % overhead: twice as big stays near 0.1 s
    assert lan.size == 4 * MiB  # 0.12 s would be over: stays


def test_serial_appends_grow_until_the_round_trip_is_a_small_share():
    # one WCS append in flight at 40 MB/s and 20 ms RTT: 4 MiB leave in 0.1 s, then the link idles
    appends = ChunkSizer(4 * MiB, 64 * MiB, serial=True)
    appends.ok(4 * MiB, _reply(0.12, 0.1))  # 17 % idle: at once to the size that makes it about 5 %
    assert appends.size == 16 * MiB  # 4x: the body at 0.4 s against 0.02 s of round trip
    appends.ok(16 * MiB, _reply(0.42, 0.4))  # under 5 %: stays
    assert appends.size == 16 * MiB
    shared = ChunkSizer(4 * MiB, 64 * MiB, serial=True)  # 100 MB/s, 20 ms, the body buffered early
    shared.ok(4 * MiB, _reply(0.087, 0.027))
    assert shared.size == 32 * MiB  # 8x at most in one answer (and 0.7 s: under 1 s)
    shared.ok(32 * MiB, _reply(0.34, 0.22))
    assert shared.size == 64 * MiB  # 4x would last 1.4 s: doubles, to the cap
    uploader = ChunkSizer(4 * MiB, 64 * MiB)  # the same answer, streams in parallel: share 25 %
    uploader.ok(4 * MiB, _reply(0.12, 0.1))
    assert uploader.size == 4 * MiB  # 17 % is under a quarter: other streams fill the wait


class _RecordingServer(StandInServer):
    """Plain uploads only: records each request's headers and file part; ``drop`` closes the
    connection after every answer without saying so (what an idle keep-alive timeout does)."""

    def __init__(self, drop: bool) -> None:
        from http.server import ThreadingHTTPServer

        outer = self
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.closed = 0

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                boundary = self.headers["Content-Type"].split("boundary=", 1)[1]
                outer.requests.append((dict(self.headers.items()), file_part(body, boundary)[0]))
                self.answer(b'{"result":"OK"}')
                self.close_connection = drop

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def shutdown_request(self, request: object) -> None:
                super().shutdown_request(request)  # type: ignore[arg-type]
                outer.closed += 1

        self._serve(Server(("127.0.0.1", 0), Handler))


@pytest.mark.parametrize("drop", [False, True], ids=["kept alive", "closed by the server"])
def test_plain_http_requests_carry_the_headers_and_reuse_or_renew_the_connection(make_engine, tmp_path, drop):
    srv = _RecordingServer(drop)
    try:
        engine = make_engine(user_agent="nbupload-test/1")
        src = make_file(tmp_path / "h.bin", 300_000)
        headers = {"X-Trace": "abc"}
        first = engine.submit(src, srv.url, protocol="plain", headers=headers).wait(60, raise_on_error=True)
        if drop:
            wait_for(lambda: srv.closed >= 1, timeout=60)
        second = engine.submit(src, srv.url, protocol="plain", filename="h2.bin").wait(
            60, raise_on_error=True
        )
    finally:
        srv.close()
    # a connection the server closed while idle is not used again: no failed attempt
    assert first.attempts == 1 and second.attempts == 1
    (h1, data1), (h2, data2) = srv.requests
    assert data1 == data2 == src.read_bytes()
    assert h1["User-Agent"] == "nbupload-test/1" and h1["X-Trace"] == "abc" and h1["Host"] == srv.url[7:-7]
    assert h1["Content-Type"].startswith("multipart/form-data; boundary=") and "X-Trace" not in h2


def test_only_plain_http_takes_the_sendfile_path():
    import httpx

    assert wire.wire_eligible(httpx.URL("http://example.org:8080/upload?x=1"))
    assert not wire.wire_eligible(httpx.URL("https://example.org/upload"))  # TLS: httpx
    assert not wire.wire_eligible(httpx.URL("http://user:pw@example.org/upload"))  # basic auth: httpx


def test_a_task_limit_rate_survives_the_journal(server, make_engine, tmp_path, chunk_gate):
    """A capped upload resumed by another process keeps its cap (a shared link stays shared)."""
    cap = 500_000
    src = make_file(tmp_path / "kept.bin", 2_000_000)
    first = make_engine(chunk_size=256 * KiB, streams=2)
    gate = chunk_gate(server.url, passes=1)  # one chunk, then held: still unfinished at the pause
    task = first.submit(src, gate.upload_url, limit_rate=cap)
    wait_for(lambda: task.acked >= 256 * KiB, timeout=60)
    task.pause()
    assert task.wait(60).state is TaskState.PAUSED
    first.shutdown(wait=True, timeout=30)
    gate.open()

    second = make_engine(chunk_size=256 * KiB, streams=2)
    (entry,) = second.unfinished()
    # what the resumed run sends, as the server counts it: the server may hold more than the
    # journal's acknowledged bytes (a chunk stored as the pause cut its answer)
    received = server.stats()["uploader"]["bytes"]
    began = time.monotonic()
    (resumed,) = second.resume(entry.id)
    assert resumed.spec.limit_rate == cap
    snap = resumed.wait(120, raise_on_error=True)
    rate = _rate(server.stats()["uploader"]["bytes"] - received, began)
    assert snap.state is TaskState.DONE and sha256_file(server.root / "kept.bin") == sha256_file(src)
    assert rate <= cap * 1.1, f"{rate:.0f} B/s over a cap of {cap} B/s"
