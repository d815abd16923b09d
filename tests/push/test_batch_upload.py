"""Batches (``upload_many``, ``upload([...])``) against the real reference server over loopback."""

from __future__ import annotations

import os
import shutil

import pytest

import nbupload
from nbupload.batch import BatchError, upload_many
from nbupload.protocols import wcs
from nbupload.server import start_server
from tests.push.conftest import AK, SK
from tests.support.helpers import CREDENTIALS, make_file, wait_for


def _tree(root, files: dict[str, int]):
    for i, (name, size) in enumerate(files.items()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        make_file(path, size, seed=i)
    return root


FILES = {
    "run1/metrics.csv": 3000,
    "run1/model.bin": 200_000,
    "run2/metrics.csv": 0,
    "notes.txt": 70_000,
    "run2/deep/er/log.txt": 5,
}


def _stored_equal(root, local, names):
    for name in names:
        assert (root / name).read_bytes() == (local / name).read_bytes(), name


def test_a_folder_lands_in_matching_folders_and_a_rerun_skips_it(server, engine, tmp_path):
    res = _tree(tmp_path / "results", FILES)
    batch = upload_many(res, server.upload_url, engine=engine)
    snap = batch.wait(60, raise_on_error=True)
    assert (snap.state, snap.files_total, snap.files_done, snap.files_skipped) == ("done", 5, 5, 0)
    assert snap.bytes_done == snap.bytes_total == sum(FILES.values())
    _stored_equal(server.root, res, FILES)
    assert "5/5 files" in snap.describe()
    batch.close()

    before = server.stats()["uploader"]["bytes"]
    again = upload_many(res, server.upload_url, engine=engine).wait(60, raise_on_error=True)
    assert (again.files_done, again.files_skipped, again.state) == (0, 5, "done")
    assert server.stats()["uploader"]["bytes"] == before  # nothing sent again

    # one file changed: only it goes again
    make_file(res / "run1" / "metrics.csv", 4000, seed=99)
    third = upload_many(res, server.upload_url, engine=engine).wait(60, raise_on_error=True)
    assert (third.files_done, third.files_skipped) == (1, 4)
    _stored_equal(server.root, res, FILES)


def test_each_small_file_is_asked_about_then_sent_whole(server, engine, tmp_path):
    """PROTOCOLS.md A1: every task queries first, even a new one-chunk file; then one chunk."""
    names = {f"run{i // 10}/m{i:02d}.csv": 1000 + i for i in range(40)}
    res = _tree(tmp_path / "small", names)
    before = server.stats()["uploader"]["requests"]
    batch = upload_many(res, server.upload_url, engine=engine)
    snap = batch.wait(120, raise_on_error=True)
    batch.close()
    assert (snap.state, snap.files_done) == ("done", 40)
    _stored_equal(server.root, res, names)
    assert server.stats()["uploader"]["requests"] - before == 2 * 40  # a query and a chunk each
    # the sessions are recorded whole: a re-run skips every file
    again = upload_many(res, server.upload_url, engine=engine).wait(60, raise_on_error=True)
    assert (again.files_done, again.files_skipped) == (0, 40)


def test_skip_checks_the_server_still_holds_the_file(server, engine, tmp_path):
    res = _tree(tmp_path / "results", {"a.csv": 1000, "b/c.csv": 2000})
    upload_many(res, server.upload_url, engine=engine).wait(60, raise_on_error=True)
    shutil.rmtree(server.root / ".partial")  # the server forgot the sessions: the stat route decides
    snap = upload_many(res, server.upload_url, engine=engine).wait(60, raise_on_error=True)
    assert snap.files_skipped == 2
    os.unlink(server.root / "b" / "c.csv")  # gone on the server: sent again
    (server.root / "a.csv").write_bytes(b"changed there")  # changed on the server: sent again
    snap = upload_many(res, server.upload_url, engine=engine).wait(60, raise_on_error=True)
    assert (snap.files_done, snap.files_skipped) == (2, 0)
    _stored_equal(server.root, res, ["a.csv", "b/c.csv"])
    snap = upload_many(res, server.upload_url, engine=engine, skip_unchanged=False).wait(60)
    assert (snap.files_done, snap.files_skipped) == (2, 0)


def test_a_glob_with_a_prefix_and_upload_of_a_list(server, engine, tmp_path, monkeypatch):
    res = _tree(tmp_path / "results", FILES)
    monkeypatch.chdir(tmp_path)
    snap = upload_many(["results/*/metrics.csv"], server.upload_url, prefix="exp7", engine=engine).wait(60)
    assert snap.state == "done" and snap.files_done == 2
    _stored_equal(server.root / "exp7", res, ["run1/metrics.csv", "run2/metrics.csv"])
    batch = nbupload.upload(["results/notes.txt", "results/run2/deep"], server.upload_url, engine=engine)
    assert isinstance(batch, nbupload.Batch)
    assert batch.wait(60).files_done == 2
    assert (server.root / "notes.txt").exists() and (server.root / "er" / "log.txt").exists()


def test_wcs_batch_keys_skip_and_a_grown_file_is_appended(server, engine, tmp_path):
    res = _tree(tmp_path / "results", {"run1/train.log": 10_000, "run1/metrics.csv": 500})
    opts = {
        "protocol": "wcs-append",
        "access_key": AK,
        "secret_key": SK,
        "scope": "logs",
        "prefix": "exp1",
        "engine": engine,
    }
    snap = upload_many(res, server.url, **opts).wait(60, raise_on_error=True)
    assert snap.files_done == 2
    obj = server.root / "logs" / "exp1" / "run1" / "train.log"
    assert obj.read_bytes() == (res / "run1" / "train.log").read_bytes()
    assert upload_many(res, server.url, **opts).wait(60).files_skipped == 2
    with open(res / "run1" / "train.log", "ab") as f:
        f.write(b"epoch 2\n" * 100)
    before = server.stats()["wcs"]["bytes"]
    snap = upload_many(res, server.url, **opts).wait(60, raise_on_error=True)
    assert (snap.files_done, snap.files_skipped) == (1, 1)
    assert server.stats()["wcs"]["bytes"] - before == 800  # only the new tail travelled
    assert obj.read_bytes() == (res / "run1" / "train.log").read_bytes()
    with pytest.raises(Exception, match="missing"):
        upload_many(res, server.url, protocol="wcs-append", scope="logs", engine=engine)


def test_failures_are_listed_with_their_codes_and_retry(tmp_path, engine):
    res = _tree(tmp_path / "results", {"ok.csv": 100, "bad.exe": 100, "sub/bad2.exe": 10})
    with start_server(root=tmp_path / "root", deny_extensions=".exe") as srv:
        batch = upload_many(res, srv.upload_url, engine=engine)
        with pytest.raises(BatchError) as info:
            batch.wait(60, raise_on_error=True)
        snap = info.value.snapshot
        assert (snap.state, snap.files_done, snap.files_failed) == ("failed", 1, 2)
        assert {f.name: f.code for f in snap.failures} == {"bad.exe": "4008", "sub/bad2.exe": "4008"}
        assert "4008" in str(info.value) and "bad.exe" in str(info.value)
        assert batch.retry() == 2
        snap = batch.wait(60)
        assert snap.state == "failed" and snap.files_failed == 2  # the rule still refuses them
        batch.close()


def test_pause_resume_and_cancel_the_whole_batch(tmp_path, engine, chunk_gate):
    res = _tree(tmp_path / "results", {f"f{i}.bin": 300_000 for i in range(6)})
    with start_server(root=tmp_path / "root", throttle=2_000_000) as srv:
        gate = chunk_gate(srv.url, passes=1)  # one chunk, then held: unfinished at the pause
        batch = upload_many(res, gate.upload_url, engine=engine, window=2)
        wait_for(lambda: batch.snapshot().bytes_done > 0, timeout=60)
        batch.pause()
        snap = batch.wait(30)
        assert snap.state == "paused" and snap.files_done < 6 and snap.files_waiting > 0
        assert all(t.state.value in ("paused", "done") for t in batch.tasks.values())
        gate.open()
        batch.resume()
        snap = batch.wait(120, raise_on_error=True)
        assert snap.state == "done" and snap.files_done == 6
        _stored_equal(srv.root, res, [f"f{i}.bin" for i in range(6)])

        more = _tree(tmp_path / "more", {f"g{i}.bin": 300_000 for i in range(6)})
        gate2 = chunk_gate(srv.url, passes=1)  # one chunk, then held: unfinished at the cancel
        batch2 = upload_many(more, gate2.upload_url, engine=engine, window=2)
        wait_for(lambda: batch2.snapshot().bytes_done > 0, timeout=60)
        batch2.cancel()
        snap = batch2.wait(30)
        assert snap.state == "cancelled" and snap.files_done < 6
        batch.close()
        batch2.close()


def test_an_interrupted_batch_is_adopted_by_the_next_run(tmp_path, make_engine, chunk_gate):
    res = _tree(tmp_path / "results", {f"f{i}.bin": 400_000 for i in range(3)})
    with start_server(root=tmp_path / "root", throttle=2_000_000) as srv:
        first = make_engine()
        gate = chunk_gate(srv.url, passes=2)  # two 64 KiB chunks, then held: unfinished at the shutdown
        batch = upload_many(res, gate.upload_url, engine=first)
        wait_for(lambda: batch.snapshot().bytes_done > 100_000, timeout=60)
        first.shutdown(wait=True, timeout=10)  # as a kernel going away: the journal keeps the tasks
        batch.close()
        gate.open()
        second = make_engine()
        assert second.unfinished()
        again = upload_many(res, gate.upload_url, engine=second)
        snap = again.wait(120, raise_on_error=True)
        assert again._adopted >= 1 and snap.files_done + snap.files_skipped == 3
        assert second.unfinished() == []
        _stored_equal(srv.root, res, [f"f{i}.bin" for i in range(3)])


def test_hostile_local_names_stay_inside_the_root(server, engine, tmp_path):
    res = tmp_path / "results"
    names = [
        "back\\slash.txt",
        "données/été.csv",
        "new\nline.txt",
        "tab\there.txt",
        "CON",
        "sp ace/ x.txt",
        "emoji/🚀.bin",
        "a..b/..c",
        "rtl\u202egpj.exe",
        "x" * 250 + ".txt",
    ]
    for i, name in enumerate(names):
        path = res / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{i}".encode())
    root = server.root
    snap = upload_many(res, server.upload_url, engine=engine).wait(60)
    assert snap.files_total == len(names) - 1  # "a..b/..c" is a hidden file: left out
    assert snap.files_done + snap.files_failed == snap.files_total
    stored = [p for p in root.rglob("*") if p.is_file() and ".partial" not in p.parts]
    for p in stored:
        assert p.resolve().is_relative_to(root.resolve())
    assert (root / "données" / "été.csv").read_bytes() == b"1"
    assert (root / "emoji" / "🚀.bin").read_bytes() == b"6"
    assert not any(p.name.startswith(".") for p in stored)
    # nothing appeared next to the root
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal", "results", "root"]
    assert wcs.etag_of(b"") == "Fto5o-5ea0sNMlW_75VgGJCv2AcJ"  # sanity of the test module's import


def test_wcs_batch_of_hostile_names_refused_or_stored_inside(server, engine, tmp_path):
    res = tmp_path / "res"
    for name in ["ok.txt", "back\\slash.txt", "ctl\x01.txt"]:
        (res / name).parent.mkdir(parents=True, exist_ok=True)
        (res / name).write_bytes(b"x")
    snap = upload_many(
        res, server.url, protocol="wcs-append", access_key=AK, secret_key=SK, scope="logs", engine=engine
    ).wait(60)
    codes = {f.name: f.status for f in snap.failures}
    assert codes == {"back\\slash.txt": 400, "ctl\x01.txt": 400}
    assert (server.root / "logs" / "ok.txt").read_bytes() == b"x" and snap.files_done == 1
    assert CREDENTIALS[AK] not in repr(snap) and SK not in str(snap.failures)


def test_a_batch_cancelled_while_it_submits_a_file_cancels_that_file_too(tmp_path, engine, chunk_gate):
    """``cancel()`` while the feeder is inside ``engine.submit`` for a file: that file's task is
    not yet among the batch's active ones, so cancel() cannot reach it; the feeder must cancel it
    as it takes it (it went on uploading: the batch stayed running, or stored a cancelled file)."""
    import threading

    res = _tree(tmp_path / "results", {f"f{i}.bin": 100_000 for i in range(3)})
    ready = threading.Event()
    holder: list = []
    submit = engine.submit

    def submit_then_cancel(*args, **kwargs):  # the exact moment, whatever the scheduling
        task = submit(*args, **kwargs)
        if not holder[1:]:
            assert ready.wait(60)
            holder[0].cancel()
            holder.append(task)
        return task

    engine.submit = submit_then_cancel
    with start_server(root=tmp_path / "root") as srv:
        gate = chunk_gate(srv.url, passes=0)  # nothing lands before the cancel
        batch = upload_many(res, gate.upload_url, engine=engine, window=1)
        holder.append(batch)
        ready.set()
        snap = batch.wait(60)
        assert snap.state == "cancelled" and snap.files_cancelled == 3, snap.describe()
        assert holder[1].wait(60).state.value == "cancelled"
        gate.open()
        assert not any((srv.root / f"f{i}.bin").exists() for i in range(3))
        batch.close()
