"""``%upload PATH... [URL]`` as one batch, in a real IPython shell, to the real reference server.

Globs (quoted or not), folders (recursive) and several files become one batch with the CLI's
messages; ``%upload pause/resume/cancel BATCH_ID`` steer it; a batch left by a killed kernel
is listed and resumed as one by the next kernel.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from IPython.core.error import UsageError

from nbupload.batch import owner_of
from nbupload.batchpaths import looks_like_url, split_url
from nbupload.ipython.extension import current_session
from nbupload.server import start_server
from tests.support.batchproc import held_batch
from tests.support.helpers import make_file, wait_for
from tests.support.ipyproc import first_kernel, ipython, kill_once_started, output_of


def _tree(root: Path, names: dict[str, int]) -> Path:
    for i, (name, size) in enumerate(names.items()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        make_file(path, size, seed=i)
    return root


@pytest.fixture
def demo(shell, run, tmp_path, capsys):
    root = tmp_path / "srv"
    run(shell, f"%upload server start --root {root} --max-file-size 64KiB")
    capsys.readouterr()
    return current_session(shell), root


def test_the_url_rule_is_shared(tmp_path, monkeypatch):
    assert split_url(["a.csv", "r/", "http://h/u"]) == (["a.csv", "r/"], "http://h/u")
    assert split_url(["a.csv", "b.csv"]) == (["a.csv", "b.csv"], None)
    assert split_url(["HTTPS://h/u"]) == ([], "HTTPS://h/u")
    with pytest.raises(ValueError, match="the URL goes last"):
        split_url(["http://h/u", "a.csv"])
    (tmp_path / "http:" / "x").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert not looks_like_url("http://x")  # exists as a path here (http: / x): a path
    assert looks_like_url("http://y")


def test_globs_folders_and_lists_are_batches_with_the_cli_messages(
    demo, shell, run, tmp_path, capsys, monkeypatch
):
    session, root = demo
    res = _tree(tmp_path / "results", {"a.csv": 100, "b.csv": 2000, "run1/metrics.csv": 30, "run1/x.txt": 7})
    monkeypatch.chdir(tmp_path)
    batch = run(shell, "%upload 'results/*.csv' --wait -o")  # quoted glob, default URL
    out = capsys.readouterr().out
    assert f"nbupload: batch {batch.id} of 2 files -> {session.server.upload_url}" in out
    assert batch.snapshot().state == "done"
    assert (root / "a.csv").read_bytes() == (res / "a.csv").read_bytes()

    batch = run(shell, f"%upload results/*/*.csv {session.server.upload_url} --wait -o")  # unquoted
    assert batch.snapshot().files_done == 1
    assert (root / "run1" / "metrics.csv").read_bytes() == (res / "run1" / "metrics.csv").read_bytes()

    capsys.readouterr()
    batch = run(shell, "%upload results/ --wait -o")  # a folder: recursive, relative names
    captured = capsys.readouterr()
    snap = batch.snapshot()
    assert (snap.files_total, snap.files_skipped, snap.files_done) == (4, 3, 1)  # skip-unchanged
    assert "4/4 files (3 skipped)" in captured.out + captured.err
    assert (root / "run1" / "x.txt").read_bytes() == (res / "run1" / "x.txt").read_bytes()

    batch = run(
        shell,
        f"%upload results/a.csv results/run1/x.txt {session.server.upload_url} --prefix two --wait -o",
    )
    assert batch.snapshot().files_done == 2
    assert (root / "two" / "x.txt").read_bytes() == (res / "run1" / "x.txt").read_bytes()


def test_failures_list_the_server_code_and_bad_input_is_a_usage_error(demo, shell, run, tmp_path, capsys):
    session, _root = demo
    res = _tree(tmp_path / "res", {"ok.bin": 1000, "big.bin": 100 << 10})
    batch = run(shell, f"%upload {res} --wait -o")
    err = capsys.readouterr().err
    snap = batch.snapshot()
    assert snap.state == "failed" and snap.files_done == 1 and snap.files_failed == 1
    assert "nbupload: failed: big.bin [4002]" in err
    with pytest.raises(UsageError, match="no file matches"):
        run(shell, f"%upload '{tmp_path}/nothing/*.csv'")
    with pytest.raises(UsageError, match="the URL goes last"):
        run(shell, f"%upload {session.server.upload_url} {res}")
    with pytest.raises(UsageError, match="--filename and --key name one file"):
        run(shell, f"%upload {res} --filename x.bin")


def test_pause_resume_and_cancel_a_batch_by_its_id(shell, run, tmp_path, capsys, chunk_gate):
    root = tmp_path / "srv"
    run(shell, f"%upload server start --root {root} --throttle 48KiB")
    gate = chunk_gate(current_session(shell).server.base_url, passes=1)  # then held: unfinished at the pause
    res = _tree(tmp_path / "res", {f"f{i}.bin": 64 << 10 for i in range(8)})
    batch = run(
        shell, f"%upload {res} {gate.upload_url} --chunk-size 16KiB --chunk-max 16KiB --streams 1 -o -q"
    )
    capsys.readouterr()
    wait_for(lambda: batch.snapshot().bytes_done > 0, timeout=60)
    run(shell, f"%upload pause {batch.id}")
    assert f"paused batch {batch.id}" in capsys.readouterr().out
    assert batch.wait(60).state == "paused"
    run(shell, "%upload list")
    assert f"batch {batch.id}: " in capsys.readouterr().out
    gate.open()
    run(shell, f"%upload resume {batch.id}")
    assert f"resumed batch {batch.id}" in capsys.readouterr().out
    snap = batch.wait(120)
    assert snap.state == "done" and snap.files_done == 8
    for i in range(8):
        assert (root / f"f{i}.bin").read_bytes() == (res / f"f{i}.bin").read_bytes()

    held = chunk_gate(current_session(shell).server.base_url, passes=0)  # unfinished at the cancel
    other = run(
        shell,
        f"%upload {res} {held.upload_url} --no-skip --prefix again --chunk-size 16KiB --streams 1 -o -q",
    )
    run(shell, f"%upload cancel {other.id}")
    assert f"cancelled batch {other.id}" in capsys.readouterr().out
    assert other.wait(60).state == "cancelled"


def test_resume_all_leaves_a_failed_batch_file_to_its_batch(demo, shell, run, tmp_path, capsys):
    """A file the server refused (4002) belongs to its batch: ``resume all`` resumes the batch,
    not the file on its own as a task the user never started ("resumed 1 task: <id>")."""
    session, _root = demo
    res = _tree(tmp_path / "res", {"a.bin": 1000, "b.bin": 2000, "big.bin": 100 << 10})
    batch = run(shell, f"%upload {res} --wait -o -q")
    assert batch.snapshot().state == "failed" and batch.snapshot().files_done == 2
    (failed,) = [t for t in session.engine.tasks() if owner_of(t.id) == batch.id and t.name == "big.bin"]
    attempts = failed.snapshot().attempts
    capsys.readouterr()
    run(shell, "%upload resume all")  # (the shell's engine may hold other tests' paused tasks)
    out = capsys.readouterr().out
    assert f"resumed batch {batch.id}" in out and failed.id not in out, out
    assert failed.snapshot().attempts == attempts and failed.snapshot().state.value == "failed"


def test_a_batch_another_process_runs_is_listed_as_running_and_left_to_it(shell, run, tmp_path, capsys):
    """Its files are one chunk each (no task entry of their own): the batch's own lock says
    another process runs it; once that process is killed, it is offered to resume."""
    from nbupload.batch import forget_batch

    session = current_session(shell)
    res = _tree(tmp_path / "res", {f"f{i}.txt": 900 + i for i in range(4)})
    with start_server(root=tmp_path / "srv") as srv, held_batch(res, srv.port, srv.upload_url) as held:
        capsys.readouterr()
        run(shell, "%upload list")
        out = capsys.readouterr().out
        assert f"batch {held.id}: 0/4 files done" in out and "running elsewhere" in out, out
        run(shell, "%upload resume all")
        assert f"resumed batch {held.id}" not in capsys.readouterr().out
        with pytest.raises(UsageError, match=f"cannot resume batch {held.id}: .*another process"):
            run(shell, f"%upload resume {held.id}")
        held.kill()
        run(shell, "%upload list")
        line = next(x for x in capsys.readouterr().out.splitlines() if f"batch {held.id}" in x)
        assert "0/4 files done" in line and "running elsewhere" not in line, line
        forget_batch(held.id, engine=session.engine)  # no offer left to the next tests


def test_a_batch_survives_a_kernel_restart_and_resumes_as_one(tmp_path, chunk_gate):
    home = tmp_path / "home"
    res = _tree(tmp_path / "res", {f"d{i // 4}/f{i}.bin": 48 << 10 for i in range(16)})
    server = start_server(root=tmp_path / "srv", throttle=64 << 10)  # ~12 s for the batch
    try:
        # 17 chunks of 16 KiB, then held: at most four files (one per worker) are part sent with
        # two chunks each, so at least three of the 3-chunk files are whole, and at most five
        gate = chunk_gate(server.url, passes=17)
        first = first_kernel(
            f"{res} {gate.upload_url} --chunk-size 16KiB --chunk-max 16KiB --streams 1 -o -q",
            home,
            tmp_path,
            started_when="files_done >= 3",
            linger=600,
        )
        batch_id = kill_once_started(first, timeout=120)
        gate.open()

        second = ipython(
            "%load_ext nbupload\n"
            "%upload list\n"
            f"%upload resume {batch_id}\n"
            "from nbupload.batch import get_batch\n"
            f"s = get_batch('{batch_id}').wait(300)\n"
            "print('FINAL', s.state, s.files_done + s.files_skipped, s.files_total)\n"
            "%upload list\n",
            home,
            tmp_path,
            "second",
        )
        out = output_of(second, timeout=360)
        assert f"batch {batch_id}: " in out and "/16 files done" in out, out  # offered as one
        assert f"1 unfinished upload from a previous session ({batch_id})" in out, out  # one offer
        assert f"resumed batch {batch_id} from the journal" in out, out
        assert "FINAL done 16 16" in out, out
        for path in res.rglob("*.bin"):
            rel = path.relative_to(res)
            assert (server.root / rel).read_bytes() == path.read_bytes(), rel
    finally:
        server.stop()


def test_a_batch_row_follows_a_reload_of_the_extension(shell, run, tmp_path, capsys, chunk_gate):
    """``%reload_ext nbupload`` hands the displayed rows to the new session: the batch's own news
    (a file skipped, the batch steered: no task event says so) reach the new controller."""
    root = tmp_path / "srv"
    run(shell, f"%upload server start --root {root} --throttle 16KiB")
    gate = chunk_gate(current_session(shell).server.base_url, passes=0)  # unfinished at the pause
    res = _tree(tmp_path / "res", {f"f{i}.bin": 32 << 10 for i in range(3)})
    batch = run(shell, f"%upload {res} {gate.upload_url} --chunk-size 16KiB --chunk-max 16KiB --streams 1 -o")
    try:
        batch.pause()  # quiet: no task event arrives while the test counts
        assert batch.wait(60).state == "paused"
        run(shell, "%reload_ext nbupload")
        session = current_session(shell)
        controller = session.panel_controller
        assert batch.id in controller.rows
        session.engine.flush_events()
        controller.flush(force=True)
        assert controller.pump.pending == 0
        batch._changed()  # what the feeder calls when files settle or the batch is steered
        assert controller.pump.pending == 1
    finally:
        batch.cancel()
    assert batch.wait(60).state == "cancelled"
    capsys.readouterr()


def test_upload_list_reads_the_journaled_batches_once(shell, run, tmp_path, capsys, monkeypatch):
    """``%upload list`` shows the offers and the journaled batches from one read of the batch
    records and of the task entries (each read opens every record: 10,000-file batches)."""
    from nbupload.batch import forget_batch
    from nbupload.engine.journal import BatchJournal, BatchRecord

    session = current_session(shell)
    folder = tmp_path / "res"
    folder.mkdir()
    items = []
    for i in range(3):
        make_file(folder / f"f{i}.bin", 500 + i, seed=i)
        items.append((str(folder / f"f{i}.bin"), f"f{i}.bin"))
    journal = BatchJournal(session.engine.config.tasks_dir)
    journal.write(
        BatchRecord("dddddddddddd", "http://127.0.0.1:9/upload", "uploader", items, sizes=[500, 501, 502])
    )
    reads = {"records": 0, "entries": 0}
    real_records, real_unfinished = BatchJournal.records, type(session.engine).unfinished

    def counting_records(self):
        reads["records"] += 1
        return real_records(self)

    def counting_unfinished(self):
        reads["entries"] += 1
        return real_unfinished(self)

    monkeypatch.setattr(BatchJournal, "records", counting_records)
    monkeypatch.setattr(type(session.engine), "unfinished", counting_unfinished)
    try:
        capsys.readouterr()
        run(shell, "%upload list")
        out = capsys.readouterr().out
        assert out.count("batch dddddddddddd: 0/3 files done") == 1, out
        assert reads == {"records": 1, "entries": 1}, reads
    finally:
        monkeypatch.undo()
        forget_batch("dddddddddddd", engine=session.engine)
