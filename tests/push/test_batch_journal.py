"""A batch is one unit: steered file by file, journaled as one, resumed as one after a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nbupload.batch import get_batch, resume_batch, unfinished_batches, upload_many
from nbupload.engine.journal import BatchJournal
from nbupload.server import start_server
from tests.push.conftest import AK, SK
from tests.support.helpers import CREDENTIALS, make_file, wait_for

REPO = Path(__file__).resolve().parents[2]


def _files(folder: Path, n: int, size: int) -> dict[str, bytes]:
    out = {}
    for i in range(n):
        name = f"part{i // 3}/f{i:02d}.bin"
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        make_file(path, size, seed=i)
        out[name] = path.read_bytes()
    return out


def test_one_file_is_steered_alone_and_the_record_holds_no_secret(make_engine, tmp_path):
    folder = tmp_path / "res"
    files = _files(folder, 4, 96 << 10)
    make_file(folder / "part0" / "f00.bin", 1 << 20, seed=9)  # the one paused: long enough to catch
    files["part0/f00.bin"] = (folder / "part0" / "f00.bin").read_bytes()
    engine = make_engine(chunk_size=16 << 10, chunk_max=16 << 10, streams=1)
    with start_server(root=tmp_path / "srv", credentials=CREDENTIALS, throttle=128 << 10) as srv:
        batch = upload_many(
            folder, srv.url, protocol="wcs-append", access_key=AK, secret_key=SK, scope="logs",
            engine=engine, window=4,
        )  # fmt: skip
        assert get_batch(batch.id) is batch
        record = BatchJournal(engine.config.tasks_dir).dir / f"{batch.id}.batch.json"
        text = record.read_text()
        assert SK not in text and "part0/f00.bin" in text and json.loads(text)["kind"] == "batch"

        first = "part0/f00.bin"
        wait_for(lambda: first in batch.tasks, timeout=60)
        batch.pause(first)  # that file only
        wait_for(lambda: batch.snapshot().files_done == 3, timeout=120)
        snap = batch.wait(120)
        assert snap.state == "paused" and snap.files_done == 3
        assert record.exists()  # paused: the journal keeps the batch
        batch.resume(first)
        snap = batch.wait(120, raise_on_error=True)
        assert snap.state == "done" and snap.files_done == 4
        wait_for(lambda: not record.exists(), timeout=30)  # done: the record goes
        for name, data in files.items():
            assert (srv.root / "logs" / name).read_bytes() == data
        batch.close()


def test_cancelling_one_waiting_file_and_then_the_batch(make_engine, tmp_path, chunk_gate):
    folder = tmp_path / "res"
    _files(folder, 6, 64 << 10)
    engine = make_engine(chunk_size=16 << 10, chunk_max=16 << 10, streams=1)
    with start_server(root=tmp_path / "srv", throttle=48 << 10) as srv:  # > 1 s a file
        gate = chunk_gate(srv.url, passes=4)  # one file's four chunks, then held: the rest wait
        batch = upload_many(folder, gate.upload_url, engine=engine, window=1)
        batch.cancel("part1/f05.bin")  # still waiting: never sent
        wait_for(lambda: batch.snapshot().files_done >= 1, timeout=120)
        batch.cancel()
        snap = batch.wait(120)
        assert snap.state == "cancelled" and snap.files_cancelled >= 2
        assert "cancelled" in snap.describe()
        assert not (srv.root / "part1" / "f05.bin").exists()
        record = BatchJournal(engine.config.tasks_dir).dir / f"{batch.id}.batch.json"
        wait_for(lambda: not record.exists(), timeout=30)
        batch.close()


def test_resuming_a_closed_batch_in_the_same_process_uploads_the_files_left(
    make_engine, tmp_path, chunk_gate
):
    """``close()`` stops the feeder and lets the batch's lock go; ``resume_batch`` of the same
    batch in the same process runs it here again (lock taken back, feeder started), and the
    files that were never submitted are uploaded."""
    folder = tmp_path / "res"
    files = _files(folder, 5, 1000)  # one chunk each: the feeder submits them one by one
    engine = make_engine()
    journal = BatchJournal(engine.config.tasks_dir)
    with start_server(root=tmp_path / "srv") as srv:
        gate = chunk_gate(srv.url, passes=1)  # the first file, then held: the rest wait
        batch = upload_many(folder, gate.upload_url, engine=engine, window=1)
        wait_for(lambda: batch.snapshot().files_done == 1 and gate.held >= 1, timeout=120)
        batch.pause()
        assert batch.wait(120).state == "paused"
        batch.close()
        assert not journal.is_locked(batch.id)  # closed: another process could resume it
        gate.open()

        again = resume_batch(batch.id, engine=engine)
        assert journal.is_locked(again.id)  # run here again
        snap = again.wait(120)
        assert (snap.state, snap.files_done + snap.files_skipped) == ("done", 5), snap
        for name, data in files.items():
            assert (srv.root / name).read_bytes() == data, name
        wait_for(lambda: journal.read(batch.id) is None, timeout=30, what="the record gone")
        again.close()


CHILD = textwrap.dedent(
    """
    import sys, time
    from nbupload.batch import upload_many
    from nbupload.engine import Engine, EngineConfig
    folder, url, journal = sys.argv[1:4]
    engine = Engine(EngineConfig(journal_dir=journal, chunk_size=16 << 10, chunk_max=16 << 10, streams=1))
    batch = upload_many(folder, url, engine=engine, window=1)
    while batch.snapshot().files_done < 2:
        time.sleep(0.02)
    print("STARTED", batch.id, flush=True)
    time.sleep(600)
    """
)


def test_a_batch_killed_with_sigkill_resumes_as_one(make_engine, tmp_path, chunk_gate):
    folder = tmp_path / "res"
    files = _files(folder, 7, 48 << 10)
    journal = tmp_path / "journal"
    with start_server(root=tmp_path / "srv", throttle=32 << 10) as srv:  # 1.5 s a file
        gate = chunk_gate(srv.url, passes=6)  # two files of three chunks, then held: unfinished at the kill
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(folder), gate.upload_url, str(journal)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            line = child.stdout.readline()
            assert line.startswith("STARTED"), line
            batch_id = line.split()[1]
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(30)
            child.stdout.close()
        gate.open()

        engine = make_engine(journal_dir=journal)
        waiting = {b.id: b for b in unfinished_batches(engine)}
        assert batch_id in waiting
        assert waiting[batch_id].files == 7 and 2 <= waiting[batch_id].done < 7

        batch = resume_batch(batch_id, engine=engine)
        assert batch.id == batch_id
        snap = batch.wait(180, raise_on_error=True)
        assert snap.state == "done" and snap.files_total == 7
        assert snap.files_done + snap.files_skipped == 7
        for name, data in files.items():
            assert (srv.root / name).read_bytes() == data, name
        wait_for(lambda: batch_id not in {b.id for b in unfinished_batches(engine)}, timeout=30)
        assert not any(u.path and u.path.startswith(str(folder)) for u in engine.unfinished())
        batch.close()


def test_a_task_submitted_without_a_journal_entry_leaves_none(make_engine, server, tmp_path):
    """``submit(journal=False)``: what a batch uses for its files of one chunk."""
    path = make_file(tmp_path / "small.bin", 1000)
    engine = make_engine()
    task = engine.submit(path, server.upload_url, journal=False, start=False)
    journal_dir = engine.config.tasks_dir
    assert not list(journal_dir.glob(f"{task.id}.*"))
    assert task.id not in {u.id for u in engine.unfinished()}
    task.resume()
    assert task.wait(60).state.value == "done"
    assert (server.root / "small.bin").read_bytes() == path.read_bytes()
    other = engine.submit(path, server.upload_url, filename="kept.bin", start=False)
    assert (journal_dir / f"{other.id}.json").exists()  # the default keeps one
    other.cancel()


def test_forgetting_a_journaled_batch_removes_its_record_and_done_log(make_engine, tmp_path):
    from nbupload.batch import forget_batch
    from nbupload.engine.journal import BatchRecord

    engine = make_engine()
    journal = BatchJournal(engine.config.tasks_dir)
    path = make_file(tmp_path / "a.bin", 10)
    journal.write(
        BatchRecord("0123456789ab", "http://127.0.0.1:9/upload", "uploader", [(str(path), "a.bin")])
    )
    log = journal.done_log("0123456789ab")
    log.add(["a.bin"])
    log.close()
    assert [(b.id, b.files, b.done) for b in unfinished_batches(engine)] == [("0123456789ab", 1, 1)]
    assert forget_batch("0123456789ab", engine=engine) == 0
    assert unfinished_batches(engine) == [] and not list(journal.dir.iterdir())
    with pytest.raises(KeyError):
        forget_batch("0123456789ab", engine=engine)
