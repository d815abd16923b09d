"""``nbupload put PATH... URL`` with folders, globs and several paths: one batch."""

from __future__ import annotations

from nbupload.server import start_server
from tests.support.cliproc import sigkill_when
from tests.support.helpers import make_file, sha256_file

AK, SK = "AK-cli", "SK-cli-secret"


def _tree(root, names):
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        make_file(root / name, 1000 + i * 300, seed=i)
    return root


def test_put_a_folder_and_globs_then_rerun_skips(cli, tmp_path, home):
    res = _tree(tmp_path / "results", ["run1/metrics.csv", "run2/metrics.csv", "run2/model.bin", "notes.txt"])
    with start_server(root=tmp_path / "root", credentials={AK: SK}) as srv:
        r = cli("put", str(res), srv.upload_url)
        assert r.returncode == 0, r.stderr
        assert "4/4 files" in r.stderr and "Traceback" not in r.stderr
        for name in ["run1/metrics.csv", "run2/metrics.csv", "run2/model.bin", "notes.txt"]:
            assert sha256_file(srv.root / name) == sha256_file(res / name)
        r = cli("put", str(res), srv.upload_url, "--quiet")
        assert r.returncode == 0 and "4 skipped" in r.stderr, r.stderr
        # a quoted glob (no shell here) and a second path, under a prefix, over WCS
        r = cli(
            "put",
            str(res / "*" / "metrics.csv"),
            str(res / "notes.txt"),
            srv.url,
            "-p",
            "wcs-append",
            "--ak",
            AK,
            "--sk",
            SK,
            "--scope",
            "bkt",
            "--prefix",
            "exp1",
        )
        assert r.returncode == 0, r.stderr
        assert sha256_file(srv.root / "bkt" / "exp1" / "run2" / "metrics.csv") == sha256_file(
            res / "run2" / "metrics.csv"
        )
        assert (srv.root / "bkt" / "exp1" / "notes.txt").exists()


def test_batch_failures_exit_1_with_codes_and_usage_errors(cli, tmp_path, home):
    res = _tree(tmp_path / "results", ["ok.txt", "bad.exe"])
    with start_server(root=tmp_path / "root", deny_extensions=".exe") as srv:
        r = cli("put", str(res), srv.upload_url, "--quiet")
        assert r.returncode == 1 and "bad.exe [4008]" in r.stderr and "Traceback" not in r.stderr
        assert (srv.root / "ok.txt").exists()
        r = cli("put", str(res), srv.upload_url, "--filename", "x")
        assert r.returncode == 2 and "--prefix" in r.stderr
        r = cli("put", str(tmp_path / "nothing-*.csv"), srv.upload_url)
        assert r.returncode == 2 and "no file matches" in r.stderr
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        (tmp_path / "a" / "x.csv").write_text("1")
        (tmp_path / "b" / "x.csv").write_text("2")
        r = cli("put", str(tmp_path / "a" / "x.csv"), str(tmp_path / "b" / "x.csv"), srv.upload_url)
        assert r.returncode == 2 and "two files would be stored as 'x.csv'" in r.stderr


def test_put_follow_appends_until_idle_and_refuses_misuse(cli, tmp_path, home):
    log = tmp_path / "train.log"
    log.write_bytes(b"line 1\nline 2\n")
    with start_server(root=tmp_path / "root", credentials={AK: SK}) as srv:
        args = ("-p", "wcs-append", "--ak", AK, "--sk", SK, "--scope", "bkt", "--key", "run/train.log")
        r = cli("put", str(log), srv.url, *args, "--follow", "--interval", "0.1", "--idle", "0.5")
        assert r.returncode == 0, r.stderr
        assert "idle, hash verified" in r.stderr
        assert (srv.root / "bkt" / "run" / "train.log").read_bytes() == log.read_bytes()
        with open(log, "ab") as f:
            f.write(b"line 3\n")
        r = cli("put", str(log), srv.url, *args, "--follow", "--interval", "0.1", "--idle", "0.5")
        assert r.returncode == 0 and "from byte 14" in r.stderr, r.stderr
        assert (srv.root / "bkt" / "run" / "train.log").read_bytes() == log.read_bytes()
        r = cli("put", str(log), srv.upload_url, "--follow")
        assert r.returncode == 2 and "wcs-append" in r.stderr
        other = tmp_path / "other.log"
        other.write_bytes(b"not the same file at all, longer than 21 bytes\n")
        r = cli("put", str(other), srv.url, *args, "--follow", "--idle", "0.5")
        assert r.returncode == 1 and "nothing was appended" in r.stderr and SK not in r.stderr


def test_a_killed_put_of_a_folder_is_listed_and_resumed_as_one_batch(cli, tmp_path, home, chunk_gate):
    names = [f"d{i // 3}/f{i}.bin" for i in range(8)]
    res = tmp_path / "res"
    for i, name in enumerate(names):
        (res / name).parent.mkdir(parents=True, exist_ok=True)
        make_file(res / name, 40_000, seed=i)
    with start_server(root=tmp_path / "root", throttle=32 << 10) as srv:  # ~5 s for 4 files at once
        # twelve 16 KiB chunks, then held: at most four files (one per worker) are part sent, so at least two
        # of the 3-chunk files are whole (the kill waits for them) and at most four: unfinished
        gate = chunk_gate(srv.url, passes=12)
        proc = cli.popen(
            "put",
            str(res),
            gate.upload_url,
            "--chunk-size",
            "16KiB",
            "--chunk-max",
            "16KiB",
            "--streams",
            "1",
        )
        sigkill_when(proc, lambda: sum(1 for n in names if (srv.root / n).exists()) >= 2, timeout=120)
        gate.open()
        r = cli("ls")
        assert r.returncode == 0, r.stderr
        line = next(x for x in r.stdout.splitlines() if " batch " in x)
        batch_id = line.split()[0]
        assert "/8" in line and gate.upload_url in line
        r = cli("resume", batch_id, "--quiet", timeout=300)
        assert r.returncode == 0, r.stderr
        assert "8/8 files" in r.stderr and "[done]" in r.stderr, r.stderr
        for name in names:
            assert sha256_file(srv.root / name) == sha256_file(res / name), name
        assert "batch" not in cli("ls").stdout  # done: the record went


def test_resume_all_exits_1_when_a_batch_fails_even_if_its_tasks_finish(cli, tmp_path, home):
    """``resume --all`` resumes a failed batch and a task of its own: the task finishes, the
    batch's refused file fails again, and the exit status says so (not the task's 0)."""
    from nbupload.engine import Engine

    res = _tree(tmp_path / "results", ["ok.txt", "bad.exe"])
    alone = tmp_path / "alone.bin"
    make_file(alone, 300 << 10, seed=7)
    with start_server(root=tmp_path / "root", deny_extensions=".exe") as srv:
        r = cli("put", str(res), srv.upload_url, "--quiet")
        assert r.returncode == 1 and "bad.exe [4008]" in r.stderr, r.stderr
        engine = Engine()  # NBUPLOAD_HOME: the CLI's journal
        try:
            task = engine.submit(alone, srv.upload_url, start=False)  # paused: left in the journal
        finally:
            engine.shutdown()
        r = cli("resume", "--all", "--quiet", timeout=120)
        assert (srv.root / "alone.bin").read_bytes() == alone.read_bytes()
        assert "bad.exe [4008]" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert r.returncode == 1, (task.id, r.stderr)


def test_ls_json_lists_a_paused_batch_as_one_row_with_its_files(cli, tmp_path, home):
    """``nbupload ls --json``: an unfinished batch is a ``kind: "batch"`` row (files and bytes
    done/total, state), its files' task rows name it, and ``ls`` in text says the same."""
    import json
    import signal

    from tests.support.helpers import wait_for

    res = tmp_path / "res"
    small = {"a/one.txt": 1000, "a/two.txt": 1300, "three.txt": 1600}
    for i, (name, size) in enumerate(small.items()):
        (res / name).parent.mkdir(parents=True, exist_ok=True)
        make_file(res / name, size, seed=i)
    make_file(res / "big.bin", 4 << 20, seed=9)  # ~64 s at the throttle: still going when paused
    total = sum(small.values()) + (4 << 20)

    def ls_json() -> tuple[dict, list[dict]]:
        r = cli("ls", "--json")
        assert r.returncode == 0, r.stderr
        rows = json.loads(r.stdout)
        batches = [row for row in rows if row["kind"] == "batch"]
        assert len(batches) <= 1, rows
        return (batches[0] if batches else {}), [row for row in rows if row["kind"] == "task"]

    def three_done_and_big_going():
        batch, tasks = ls_json()
        big = [t for t in tasks if t["name"] == "big.bin" and t["acked"] >= 64 << 10]
        return (batch, big[0]) if batch.get("files_done") == 3 and big else None

    with start_server(root=tmp_path / "root", throttle=64 << 10) as srv:
        proc = cli.popen("put", str(res), srv.upload_url, "--chunk-size", "64KiB", "--chunk-max", "64KiB")
        running, big = wait_for(three_done_and_big_going, timeout=120)
        # while `put` runs, its big file's entry is locked: the batch shows as running
        assert running["state"] == "running" and running["locked"] is True, running
        assert running["tasks"] == [big["id"]] and big["batch"] == running["id"], (running, big)
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the batch pauses, its record stays
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert f"nbupload resume {running['id']}" in err, err

        batch, tasks = ls_json()
        assert [t["id"] for t in tasks] == [big["id"]], tasks
        big = tasks[0]
        assert big["batch"] == batch["id"] == running["id"] and big["state"] == "paused", big
        assert 64 << 10 <= big["acked"] < big["total"] == 4 << 20, big
        assert batch == {
            "kind": "batch",
            "id": running["id"],
            "url": srv.upload_url,
            "protocol": "uploader",
            "state": "stopped",
            "locked": False,
            "files_total": 4,
            "files_done": 3,
            "bytes_total": total,
            "bytes_done": sum(small.values()) + big["acked"],
            "tasks": [big["id"]],
            "created_at": batch["created_at"],
        }, batch
        assert isinstance(batch["created_at"], float) and batch["created_at"] > 0

        # the text listing: the same batch, counts and state, on one row
        text = cli("ls").stdout
        line = next(x for x in text.splitlines() if x.startswith(batch["id"]))
        assert "batch of 4 files (3/4 done)" in line and " stopped " in line, text
        assert line.endswith(f"-> {srv.upload_url}"), text

        r = cli("rm", batch["id"])
        assert r.returncode == 0, r.stderr
        assert json.loads(cli("ls", "--json").stdout) == []
