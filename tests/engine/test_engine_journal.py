"""The journal: resuming in another engine (as after a restart), secrets, changed files, locks."""

from __future__ import annotations

import threading

import pytest

from nbupload.engine import TaskLockedError, TaskState
from nbupload.server import start_server
from tests.support.helpers import CREDENTIALS, make_file, sha256_file, wait_for

AK, SK = next(iter(CREDENTIALS.items()))
CHUNK = 64 << 10


@pytest.fixture
def slow_server(tmp_path):
    with start_server(root=tmp_path / "root", credentials=CREDENTIALS, throttle=2_000_000) as srv:
        yield srv


@pytest.fixture
def gate(slow_server, chunk_gate):
    """Three chunks to the slow server, then held: an upload through it is unfinished at the pause."""
    return chunk_gate(slow_server.url, passes=3)


def _start_and_pause(engine, gate, *args, **kwargs):
    """Submit through ``gate``, pause once its three chunks are acknowledged, open the gate."""
    task = engine.submit(*args, **kwargs)
    wait_for(lambda: task.acked >= 3 * CHUNK)
    task.pause()
    assert task.wait(10).state is TaskState.PAUSED
    gate.open()
    return task


def test_journal_holds_no_secret_and_resume_needs_them_again(
    slow_server, make_engine, tmp_path, journal_dir, gate
):
    src = make_file(tmp_path / "secret.bin", 1_000_000)
    first = make_engine(chunk_size=CHUNK)
    task = _start_and_pause(
        first,
        gate,
        src,
        gate.url,
        protocol="wcs-append",
        access_key=AK,
        secret_key=SK,
        scope="bkt",
        key="s.bin",
        headers={"Authorization": "Bearer hdr-secret-123", "X-Trace": "trace-1"},
        fields={"token": "field-secret-456", "album": "holiday"},
    )
    minted = task.spec.credentials.current()
    text = (journal_dir / f"{task.id}.json").read_text()
    for secret in (SK, "hdr-secret-123", "field-secret-456", minted, minted.split(":")[1]):
        assert secret not in text
    for kept in ("trace-1", "holiday", "s.bin", str(src), '"position"', task.spec.boundary):
        assert kept in text
    position = task.driver_state.position
    assert position >= 3 * CHUNK and f'"position": {position}' in text
    first.shutdown()

    second = make_engine(chunk_size=CHUNK)
    [unfinished] = second.unfinished()
    assert (unfinished.id, unfinished.acked, unfinished.total, unfinished.locked) == (
        task.id,
        position,
        1_000_000,
        False,
    )
    [again] = second.resume(task.id)
    snap = again.wait(10)
    assert snap.state is TaskState.FAILED and snap.error.code == "needs-credentials"
    assert "never written to the journal" in snap.error.message
    [again] = second.resume(
        task.id,
        access_key=AK,
        secret_key=SK,
        headers={"Authorization": "Bearer hdr-secret-123"},
        fields={"token": "field-secret-456"},
    )
    again.wait(30, raise_on_error=True)
    assert sha256_file(slow_server.root / "bkt" / "s.bin") == sha256_file(src)
    assert not (journal_dir / f"{task.id}.json").exists()


def test_resume_in_a_new_engine_sends_at_most_one_chunk_again(slow_server, make_engine, tmp_path, gate):
    src = make_file(tmp_path / "r.bin", 1_000_000)
    first = make_engine(chunk_size=CHUNK)
    task = _start_and_pause(first, gate, src, gate.upload_url)
    first.shutdown()
    second = make_engine(chunk_size=CHUNK)
    [again] = second.resume()
    assert again.id == task.id and again.acked >= 3 * CHUNK  # known before any request
    again.wait(30, raise_on_error=True)
    assert sha256_file(slow_server.root / "r.bin") == sha256_file(src)
    # the pause cut every chunk in flight: at most one chunk per stream travels twice
    streams = first.config.streams
    assert slow_server.stats()["uploader"]["bytes"] - src.stat().st_size <= streams * CHUNK


def test_changed_source_is_detected_on_resume(slow_server, make_engine, tmp_path, gate):
    src = make_file(tmp_path / "c.bin", 1_000_000)
    first = make_engine(chunk_size=CHUNK)
    task = _start_and_pause(first, gate, src, gate.upload_url)
    first.shutdown()
    with open(src, "r+b") as f:  # same size, new bytes
        f.write(b"changed!")
    second = make_engine(chunk_size=CHUNK)
    [again] = second.resume(task.id)
    snap = again.wait(10)
    assert snap.state is TaskState.FAILED and snap.error.code == "source-changed"
    assert "changed since the upload started" in snap.error.message and str(src) in snap.error.message
    assert not (slow_server.root / "c.bin").exists()


def test_two_resumers_at_once_exactly_one_wins(slow_server, make_engine, tmp_path, gate):
    src = make_file(tmp_path / "two.bin", 1_000_000)
    first = make_engine(chunk_size=CHUNK)
    task = _start_and_pause(first, gate, src, gate.upload_url)
    first.shutdown()
    a, b = make_engine(chunk_size=CHUNK), make_engine(chunk_size=CHUNK)
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def go(label, eng):
        barrier.wait()
        try:
            outcomes[label] = eng.resume(task.id)[0]
        except TaskLockedError as exc:
            outcomes[label] = exc

    threads = [threading.Thread(target=go, args=(n, e)) for n, e in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    errors = [v for v in outcomes.values() if isinstance(v, TaskLockedError)]
    winners = [v for v in outcomes.values() if not isinstance(v, Exception)]
    assert len(errors) == 1 and len(winners) == 1
    assert "being uploaded by another process" in str(errors[0])
    loser = b if isinstance(outcomes["b"], Exception) else a
    assert [u.locked for u in loser.unfinished()] == [True]
    assert loser.resume() == []  # resume-all skips what another owner runs
    winners[0].wait(30, raise_on_error=True)
    assert sha256_file(slow_server.root / "two.bin") == sha256_file(src)


def test_in_memory_sources_are_not_journaled(server, engine, journal_dir):
    task = engine.submit(b"x" * 500_000, server.upload_url, filename="mem.bin", start=False)
    assert task.state is TaskState.PAUSED and not task.persistent
    assert not journal_dir.exists() or list(journal_dir.glob("*.json")) == []
    task.resume()
    task.wait(30, raise_on_error=True)
    assert (server.root / "mem.bin").stat().st_size == 500_000


def test_cancel_forgets_the_task(slow_server, make_engine, tmp_path, journal_dir, gate):
    src = make_file(tmp_path / "x.bin", 1_000_000)
    eng = make_engine(chunk_size=CHUNK)
    task = _start_and_pause(eng, gate, src, gate.upload_url)
    assert (journal_dir / f"{task.id}.json").exists()
    task.cancel()
    assert task.state is TaskState.CANCELLED
    assert list(journal_dir.iterdir()) == []  # json and lock gone
    task.resume()  # final: nothing happens
    assert task.state is TaskState.CANCELLED


def test_secret_url_parameters_stay_out_of_journal_and_reprs(
    slow_server, make_engine, tmp_path, journal_dir, gate
):
    src = make_file(tmp_path / "q.bin", 1_000_000)
    url = gate.upload_url + "?token=url-secret-789&team=blue"
    first = make_engine(chunk_size=CHUNK)
    task = _start_and_pause(first, gate, src, url)
    text = (journal_dir / f"{task.id}.json").read_text()
    assert "url-secret-789" not in text and "team=blue" in text
    assert "url-secret-789" not in repr(task) and "token=***" in task.snapshot().url
    first.shutdown()
    second = make_engine(chunk_size=CHUNK)
    [again] = second.resume(task.id)
    snap = again.wait(10)
    assert snap.error.code == "needs-secrets" and "URL parameter token" in snap.error.message
    with pytest.raises(ValueError, match="is not this task's URL"):
        second.resume(task.id, url="http://127.0.0.1:1/other?token=x")
    [again] = second.resume(task.id, url=url)
    again.wait(30, raise_on_error=True)
    assert sha256_file(slow_server.root / "q.bin") == sha256_file(src)


@pytest.mark.parametrize("protocol", ["uploader", "wcs-append"])
def test_progress_journal_writes_are_durable_only_where_they_must_be(
    server, make_engine, tmp_path, monkeypatch, journal_dir, protocol
):
    # 16 chunks. Uploader progress skips fsync (a resume asks the server what it holds); a
    # WCS position is the client's own record for judging a replay, so it stays durable.
    import os as _os

    calls = []
    real_fsync = _os.fsync
    journal = str(journal_dir.resolve())

    def counting_fsync(fd):  # the embedded server fsyncs too: count the journal's files only
        if _os.readlink(f"/proc/self/fd/{fd}").startswith(journal):
            calls.append(fd)
        return real_fsync(fd)

    monkeypatch.setattr(_os, "fsync", counting_fsync)
    engine = make_engine(chunk_size=64 << 10, chunk_max=64 << 10)  # 16 appends: no growth
    src = make_file(tmp_path / "j.bin", 16 * (64 << 10))
    kw = dict(access_key=AK, secret_key=SK, scope="b", key="j.bin") if protocol == "wcs-append" else {}
    url = server.url if protocol == "wcs-append" else server.upload_url
    task = engine.submit(src, url, protocol=protocol, **kw)
    assert task.wait(30).state is TaskState.DONE
    if protocol == "uploader":
        assert sha256_file(server.root / "j.bin") == sha256_file(src)
        assert len(calls) <= 6  # creation and the mode switch, not one pair per chunk
    else:
        assert sha256_file(server.root / "b" / "j.bin") == sha256_file(src)
        assert len(calls) >= 16


def test_a_progress_save_still_pending_when_the_task_ends_never_brings_its_entry_back(
    server, make_engine, tmp_path, journal_dir, monkeypatch
):
    # Progress saves are written off the stream threads (engine/saver.py). Hold every one of
    # them until the task is done and its entry removed: none may write the entry again.
    from nbupload.engine.engine import Engine

    release = threading.Event()
    held: list[str] = []
    real = Engine._save_progress

    def slow_save(self, task):
        held.append(task.id)
        release.wait(60)
        real(self, task)

    monkeypatch.setattr(Engine, "_save_progress", slow_save)
    eng = make_engine(chunk_size=64 << 10, chunk_max=64 << 10, streams=2)
    src = make_file(tmp_path / "p.bin", 16 * (64 << 10))
    task = eng.submit(src, server.upload_url)
    assert task.wait(60).state is TaskState.DONE
    assert held  # at least one save was waiting when the task ended
    assert list(journal_dir.glob("*.json")) == []
    release.set()
    assert eng._saver.flush(60)
    assert list(journal_dir.iterdir()) == []  # json and lock stay gone
    assert sha256_file(server.root / "p.bin") == sha256_file(src)


def test_shutdown_hooks_run_first_and_last_and_can_be_removed(
    server, make_engine, journal_dir, tmp_path, chunk_gate
):
    """``on_shutdown(stop, released)``: ``stop`` runs while the engine's tasks still run (what
    builds on the engine stops first), ``released`` once they are paused and their locks are
    released; a removed hook does not run; a failing hook does not stop the shutdown."""
    from nbupload.engine.journal import Journal

    src = tmp_path / "big.bin"
    make_file(src, 4 * CHUNK)
    engine = make_engine(chunk_size=CHUNK, streams=1)
    gate = chunk_gate(server.url, passes=1)
    task = engine.submit(src, gate.upload_url)
    wait_for(lambda: task.acked >= CHUNK and gate.held >= 1, timeout=60)
    journal = Journal(journal_dir)
    seen: list[tuple[str, str, bool]] = []

    def stop() -> None:
        seen.append(("stop", task.state.value, journal.is_locked(task.id)))

    def released() -> None:
        seen.append(("released", task.state.value, journal.is_locked(task.id)))

    def broken() -> None:
        raise OSError("a hook that fails")

    remove = engine.on_shutdown(lambda: seen.append(("removed", "", False)))
    engine.on_shutdown(broken, broken)
    engine.on_shutdown(stop, released)
    remove()
    engine.shutdown()
    assert seen == [("stop", "uploading", True), ("released", "paused", False)], seen
