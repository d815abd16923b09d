"""A journaled batch's liveness and its listing: the batch's own lock says another process runs
it (its one-chunk files have no task entry to lock), SIGKILL lets it go, and listing a batch
reads its record and done log only (no ``stat`` per file)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbupload.batch import forget_batch, resume_batch, unfinished_batches
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
