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


def test_a_killed_put_of_a_folder_is_listed_and_resumed_as_one_batch(cli, tmp_path, home):
    names = [f"d{i // 3}/f{i}.bin" for i in range(8)]
    res = tmp_path / "res"
    for i, name in enumerate(names):
        (res / name).parent.mkdir(parents=True, exist_ok=True)
        make_file(res / name, 40_000, seed=i)
    with start_server(root=tmp_path / "root", throttle=32 << 10) as srv:  # ~5 s for 4 files at once
        proc = cli.popen(
            "put", str(res), srv.upload_url, "--chunk-size", "16KiB", "--chunk-max", "16KiB", "--streams", "1"
        )
        sigkill_when(proc, lambda: sum(1 for n in names if (srv.root / n).exists()) >= 2, timeout=120)
        r = cli("ls")
        assert r.returncode == 0, r.stderr
        line = next(x for x in r.stdout.splitlines() if " batch " in x)
        batch_id = line.split()[0]
        assert "/8" in line and srv.upload_url in line
        r = cli("resume", batch_id, "--quiet", timeout=300)
        assert r.returncode == 0, r.stderr
        assert "8/8 files" in r.stderr and "[done]" in r.stderr, r.stderr
        for name in names:
            assert sha256_file(srv.root / name) == sha256_file(res / name), name
        assert "batch" not in cli("ls").stdout  # done: the record went
