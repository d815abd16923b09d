"""A journaled batch's liveness and its listing: the batch's own lock says another process runs
it (its one-chunk files have no task entry to lock), SIGKILL lets it go, and listing a batch
reads its record and done log only (no ``stat`` per file)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from nbupload.batch import batches, forget_batch, resume_batch, unfinished_batches, upload_many
from nbupload.engine import TaskLockedError
from nbupload.engine.journal import BatchJournal, BatchRecord
from nbupload.panel.batchrow import batch_offers
from nbupload.server import start_server
from tests.support.batchproc import held_batch
from tests.support.helpers import make_file, wait_for
from tests.support.proxy import Fault


def _one_chunk_files(folder: Path, n: int) -> dict[str, bytes]:
    out = {}
    for i in range(n):
        name = f"part{i % 2}/f{i:02d}.txt"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        make_file(folder / name, 800 + 50 * i, seed=i)
        out[name] = (folder / name).read_bytes()
    return out


def test_a_batch_run_by_another_process_is_running_in_listings_and_offers_until_killed(make_engine, tmp_path):
    folder = tmp_path / "res"
    files = _one_chunk_files(folder, 5)
    journal = tmp_path / "journal"
    with (
        start_server(root=tmp_path / "srv", throttle=32 << 10) as srv,
        held_batch(folder, srv.port, srv.upload_url, journal) as held,
    ):
        engine = make_engine(journal_dir=journal)
        (running,) = unfinished_batches(engine)
        assert (running.id, running.state, running.files, running.done) == (held.id, "running", 5, 0)
        assert running.tasks == () and "running elsewhere" in running.text  # no task entry of their own
        (offer,), _rest = batch_offers(engine, engine.unfinished())
        assert offer.id == held.id and offer.locked and not offer.resumable, offer
        assert "another kernel or process is running it" in offer.text
        with pytest.raises(TaskLockedError, match="another process"):
            resume_batch(held.id, engine=engine)
        with pytest.raises(TaskLockedError, match="another process"):
            forget_batch(held.id, engine=engine)
        assert BatchJournal(journal).read(held.id) is not None  # refused: nothing went

        held.kill()
        (stopped,) = unfinished_batches(engine)
        assert (stopped.id, stopped.state, stopped.files) == (held.id, "stopped", 5)
        (offer,), _rest = batch_offers(engine, engine.unfinished())
        assert not offer.locked and offer.resumable and "running" not in offer.text, offer

        held.proxy.default = Fault()  # new connections go through
        batch = resume_batch(held.id, engine=engine)
        assert BatchJournal(journal).is_locked(held.id)  # this process runs it now
        snap = batch.wait(180, raise_on_error=True)
        assert snap.state == "done" and snap.files_done + snap.files_skipped == 5
        for name, data in files.items():
            assert (srv.root / name).read_bytes() == data, name
        wait_for(lambda: not list(BatchJournal(journal).dir.glob(f"{held.id}.*")), timeout=30)
        batch.close()


def test_listing_a_batch_reads_its_record_and_done_log_and_stats_no_file(make_engine, tmp_path, monkeypatch):
    engine = make_engine()
    journal = BatchJournal(engine.config.tasks_dir)
    folder = tmp_path / "res"
    folder.mkdir()
    sizes = [100 + i for i in range(300)]
    items = []
    for i, size in enumerate(sizes):
        path = folder / f"f{i:03d}.bin"
        path.write_bytes(b"x" * size)
        items.append((str(path), path.name))
    journal.write(BatchRecord("aaaaaaaaaaaa", "http://127.0.0.1:9/upload", "uploader", items, sizes=sizes))
    log = journal.done_log("aaaaaaaaaaaa")
    log.add([name for _path, name in items[:120]])
    log.close()
    os.unlink(items[-1][0])  # gone since: the record still says what the batch held

    real_stat = os.stat
    statted: list[str] = []

    def counting_stat(path, *args, **kwargs):
        if str(path).startswith(str(folder)):
            statted.append(str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting_stat)
    (b,) = unfinished_batches(engine)
    assert statted == []
    assert (b.files, b.done, b.bytes_total, b.bytes_done) == (300, 120, sum(sizes), sum(sizes[:120]))
    assert b.state == "stopped"

    # a record written before sizes were kept: its files are statted (one gone counts 0)
    journal.write(BatchRecord("bbbbbbbbbbbb", "http://127.0.0.1:9/upload", "uploader", items[:3]))
    old = next(x for x in unfinished_batches(engine) if x.id == "bbbbbbbbbbbb")
    assert (old.files, old.done, old.bytes_total) == (3, 0, sum(sizes[:3]))
    assert len(statted) == 3


def test_files_done_after_the_batch_settled_once_are_still_written_to_its_done_log(
    make_engine, server, tmp_path
):
    """The done log is what ``ls`` counts after a restart: a batch that settled (failed) and
    was retried here goes on logging the files it finishes."""
    engine = make_engine()
    journal = BatchJournal(engine.config.tasks_dir)
    folder = tmp_path / "res"
    folder.mkdir()
    make_file(folder / "ok.txt", 700)
    items = [(str(folder / n), n) for n in ("ok.txt", "a.txt", "b.txt")]  # a and b: not there yet
    journal.write(BatchRecord("cccccccccccc", server.upload_url, "uploader", items, sizes=[700, 0, 0]))
    batch = resume_batch("cccccccccccc", engine=engine)
    snap = batch.wait(120)
    assert (snap.state, snap.files_done, snap.files_failed) == ("failed", 1, 2), snap
    assert journal.done_log("cccccccccccc").read() == {"ok.txt"}

    make_file(folder / "a.txt", 900, seed=1)
    assert batch.retry("a.txt") == 1
    wait_for(lambda: batch.snapshot().files_done == 2, timeout=120)
    snap = batch.wait(120)
    assert (snap.state, snap.files_done, snap.files_failed) == ("failed", 2, 1), snap
    wait_for(
        lambda: journal.done_log("cccccccccccc").read() == {"ok.txt", "a.txt"},
        timeout=30,
        what="a.txt in the done log",
    )
    assert (server.root / "a.txt").read_bytes() == (folder / "a.txt").read_bytes()
    batch.close()
    assert not journal.is_locked("cccccccccccc")  # closed: no longer run here


_SHUTS_DOWN = textwrap.dedent(
    """
    import sys
    from nbupload.batch import batches, upload_many
    from nbupload.engine import Engine, EngineConfig
    folder, url, journal = sys.argv[1:4]
    engine = Engine(EngineConfig(journal_dir=journal))
    batch = upload_many(folder, url, engine=engine)
    print("STARTED", batch.id, flush=True)
    sys.stdin.readline()
    engine.shutdown()
    print("SHUT", batch.snapshot().state, len(batches()), flush=True)
    sys.stdin.read()  # the program goes on, the batch still referenced, until the test kills it
    """
)


def test_a_program_that_shuts_its_engine_down_and_goes_on_lets_its_batch_go(make_engine, tmp_path):
    """``Engine.shutdown()`` stops the engine's batches too: the batch's lock goes at once (not
    when the program ends or the ``Batch`` is collected), its record and done log stay, and
    another process resumes it and finishes the files."""
    folder = tmp_path / "res"
    files = _one_chunk_files(folder, 4)
    journal = tmp_path / "journal"
    with (
        start_server(root=tmp_path / "srv") as srv,
        held_batch(folder, srv.port, srv.upload_url, journal, script=_SHUTS_DOWN) as held,
    ):
        engine = make_engine(journal_dir=journal)
        assert unfinished_batches(engine)[0].state == "running"
        assert held.child.stdin is not None and held.child.stdout is not None
        held.child.stdin.write("shutdown\n")
        held.child.stdin.flush()
        line = held.child.stdout.readline()
        assert line.startswith("SHUT"), line
        assert held.child.poll() is None  # still running: its exit is not what let the lock go
        (stopped,) = unfinished_batches(engine)
        assert (stopped.id, stopped.state, stopped.files) == (held.id, "stopped", 4), stopped
        assert line.split() == ["SHUT", "paused", "0"], line  # settled, and no longer live there
        assert BatchJournal(journal).read(held.id) is not None

        held.proxy.default = Fault()  # new connections go through
        batch = resume_batch(held.id, engine=engine)
        snap = batch.wait(180, raise_on_error=True)
        assert snap.state == "done" and snap.files_done + snap.files_skipped == 4, snap
        for name, data in files.items():
            assert (srv.root / name).read_bytes() == data, name
        batch.close()


def test_shutting_the_engine_down_lets_its_batch_go_and_a_new_engine_resumes_it(
    make_engine, tmp_path, chunk_gate
):
    """In one process: after ``shutdown()`` the batch (still referenced) is no longer live,
    its lock is free, a ``wait()`` on it returns (paused), and ``resume_batch`` with a new
    engine finishes it."""
    folder = tmp_path / "res"
    files = _one_chunk_files(folder, 5)
    first = make_engine()
    journal = BatchJournal(first.config.tasks_dir)
    with start_server(root=tmp_path / "srv") as srv:
        gate = chunk_gate(srv.url, passes=1)
        batch = upload_many(folder, gate.upload_url, engine=first, window=2)
        wait_for(lambda: batch.snapshot().files_done == 1 and gate.held >= 1, timeout=120)
        first.shutdown()
        assert batch.wait(60).state == "paused"
        with pytest.raises(RuntimeError, match=r"engine was shut down; resume it with .*resume_batch"):
            batch.resume()  # it cannot run there any more
        with pytest.raises(RuntimeError, match="engine was shut down"):
            upload_many(folder, gate.upload_url, engine=first)
        assert not journal.is_locked(batch.id) and journal.read(batch.id) is not None
        assert batch.id not in {b.id for b in batches()}
        gate.open()

        second = make_engine()
        (listed,) = unfinished_batches(second)
        assert (listed.id, listed.state) == (batch.id, "stopped")
        again = resume_batch(batch.id, engine=second, url=srv.upload_url)
        assert again is not batch and journal.is_locked(batch.id)
        snap = again.wait(120, raise_on_error=True)
        assert snap.state == "done" and snap.files_done + snap.files_skipped == 5, snap
        for name, data in files.items():
            assert (srv.root / name).read_bytes() == data, name
        again.close()
