"""``nbupload put / resume / ls / rm / demo`` as a user runs them, against the real server."""

from __future__ import annotations

import json
import signal
import time

import pytest

from nbupload.cli import CommandError
from nbupload.cli.upload import put_options, put_parser
from nbupload.server import start_server
from tests.support.cliproc import journal_acked, journal_files, run_cli, sigkill_when
from tests.support.helpers import child_env, make_file, sha256_file, wait_for

AK, SK = "AK-cli", "SK-cli-secret"
CHUNK = 256 << 10


@pytest.fixture
def server(tmp_path):
    with start_server(root=tmp_path / "root", credentials={AK: SK}) as srv:
        yield srv


@pytest.fixture
def slow_server(tmp_path):
    with start_server(root=tmp_path / "root", credentials={AK: SK}, throttle=1_500_000) as srv:
        yield srv


@pytest.fixture
def crawl_server(tmp_path):
    """300 kB/s: an upload of a few MB lasts long enough for a test to act while it runs,
    however slowly the machine starts the processes."""
    with start_server(root=tmp_path / "root", credentials={AK: SK}, throttle=300_000) as srv:
        yield srv


def test_put_uploader_and_wcs(cli, server, tmp_path, home):
    src = make_file(tmp_path / "a.bin", 700_000)
    r = cli("put", str(src), server.upload_url, "--chunk-size", "256KiB", "--field", "album=x", "--quiet")
    assert r.returncode == 0, r.stderr
    assert sha256_file(server.root / "a.bin") == sha256_file(src)
    r = cli(
        "put",
        str(src),
        server.url,
        "-p",
        "wcs-append",
        "--ak",
        AK,
        "--sk",
        SK,
        "--scope",
        "bkt",
        "--key",
        "k/a.bin",
    )
    assert r.returncode == 0, r.stderr
    assert "uploaded" in r.stderr and "etag" in r.stderr
    assert sha256_file(server.root / "bkt" / "k" / "a.bin") == sha256_file(src)
    assert journal_files(home) == []


def test_put_wcs_with_a_bare_bucket_scope_keys_by_file_name(cli, server, tmp_path, home):
    """The same rule as ``%upload``: ``--scope bucket`` without ``--key`` uploads to bucket/<file name>."""
    src = make_file(tmp_path / "bare.bin", 300_000)
    r = cli(
        "put", str(src), server.url, "-p", "wcs-append", "--ak", AK, "--sk", SK, "--scope", "bkt", "--quiet"
    )
    assert r.returncode == 0, r.stderr
    assert sha256_file(server.root / "bkt" / "bare.bin") == sha256_file(src)


def test_put_failure_shows_the_server_code_and_message(cli, tmp_path, home):
    src = make_file(tmp_path / "big.bin", 300_000)
    with start_server(root=tmp_path / "r", max_file_size=100_000) as srv:
        r = cli("put", str(src), srv.upload_url, "--quiet")
    assert r.returncode == 1
    assert "4002" in r.stderr and "File exceeded max_file_size" in r.stderr and "Traceback" not in r.stderr
    assert journal_files(home) == []  # nothing to resume: it cannot succeed


def test_usage_errors_are_clear(cli, tmp_path):
    r = cli("put", str(tmp_path / "nope.bin"), "http://127.0.0.1:9/upload")
    assert r.returncode == 2 and "no such file" in r.stderr
    (tmp_path / "f").write_bytes(b"x")
    r = cli("put", str(tmp_path / "f"), "http://127.0.0.1:9/upload", "--key", "k")  # --token is for both
    assert r.returncode == 2 and "wcs-append" in r.stderr
    r = cli("put", str(tmp_path / "f"), "http://127.0.0.1:9", "-p", "wcs-append", "--scope", "b:k")
    assert r.returncode == 2 and "missing: access key, secret key" in r.stderr
    r = cli("put", str(tmp_path / "f"), "ftp://x/upload")
    assert r.returncode == 2 and "invalid URL" in r.stderr
    r = cli("resume")
    assert r.returncode == 2 and "--all" in r.stderr
    r = cli("resume", "feedfacecafe")
    assert r.returncode == 1 and "no unfinished task" in r.stderr


def test_put_options_are_reusable_by_the_magic():
    args = put_parser("%upload").parse_args(
        [
            "f.bin",
            "http://h/u",
            "--chunk-size",
            "1MiB",
            "--chunk-max",
            "2MiB",
            "--field",
            "a=1",
            "--header",
            "X-A: b",
            "--mime",
            "t/x",
        ]
    )
    opts = put_options(args)
    assert (
        opts["chunk_size"] == 1 << 20
        and opts["chunk_max"] == 2 << 20
        and opts["fields"] == {"a": "1"}
        and opts["headers"] == {"X-A": "b"}
    )
    assert opts["protocol"] == "uploader" and opts["mime"] == "t/x"
    with pytest.raises(CommandError):
        put_options(put_parser().parse_args(["f", "http://h", "--token", "t", "--ak", "a"]))


@pytest.mark.parametrize(("streams", "size"), [(1, 2_000_000), (4, 3_000_000)])
def test_sigkill_then_resume_sends_at_most_one_chunk_per_stream_again(
    cli, slow_server, tmp_path, home, chunk_gate, streams, size
):
    src = make_file(tmp_path / f"killed{streams}.bin", size)
    gate = chunk_gate(slow_server.url, passes=2)  # two chunks, then held: unfinished at the kill
    # --chunk-max pins the chunk at 256 KiB (chunks grow otherwise): the bound below is in chunks.
    proc = cli.popen(
        "put",
        str(src),
        gate.upload_url,
        "--chunk-size",
        "256KiB",
        "--chunk-max",
        "256KiB",
        "--streams",
        str(streams),
        "--quiet",
    )
    sigkill_when(proc, lambda: journal_acked(home) >= 2 * CHUNK, timeout=120)
    gate.open()
    task_id = json.loads(journal_files(home)[0].read_text())["id"]
    r = cli("ls")
    assert task_id in r.stdout and src.name in r.stdout
    before = slow_server.stats()["uploader"]["bytes"]
    r = cli("resume", task_id, "--streams", str(streams))
    assert r.returncode == 0, r.stderr
    assert "resuming task" in r.stderr
    assert sha256_file(slow_server.root / src.name) == sha256_file(src)
    sent_twice = slow_server.stats()["uploader"]["bytes"] - size
    print(
        f"\nSIGKILL at {before} bytes received; bytes sent again after resume: {sent_twice} "
        f"(chunk {CHUNK}, {streams} stream(s))"
    )
    assert 0 <= sent_twice <= streams * CHUNK  # at most the chunks in flight at the kill, one per stream
    assert journal_files(home) == []


def test_ctrl_c_pauses_and_says_how_to_resume(cli, slow_server, tmp_path, home, chunk_gate):
    src = make_file(tmp_path / "int.bin", 4_000_000)
    gate = chunk_gate(slow_server.url, passes=1)  # one chunk, then held: unfinished at the Ctrl-C
    proc = cli.popen("put", str(src), gate.upload_url, "--chunk-size", "256KiB")
    try:
        wait_for(lambda: journal_acked(home) >= CHUNK, timeout=60)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    [entry] = journal_files(home)
    task_id = entry.stem
    assert f"paused; resume with: nbupload resume {task_id}" in err
    gate.open()
    r = cli("resume", "--all", "--quiet")
    assert r.returncode == 0, r.stderr
    assert sha256_file(slow_server.root / "int.bin") == sha256_file(src)


def test_sigterm_pauses_and_says_how_to_resume(cli, slow_server, tmp_path, home, chunk_gate):
    src = make_file(tmp_path / "term.bin", 4_000_000)
    gate = chunk_gate(slow_server.url, passes=1)  # one chunk, then held: unfinished at the SIGTERM
    proc = cli.popen("put", str(src), gate.upload_url, "--chunk-size", "256KiB")
    try:
        wait_for(lambda: journal_acked(home) >= CHUNK, timeout=60)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err
    [entry] = journal_files(home)
    assert f"paused; resume with: nbupload resume {entry.stem}" in err and "Traceback" not in err
    gate.open()
    r = cli("resume", "--all", "--quiet")
    assert r.returncode == 0, r.stderr
    assert sha256_file(slow_server.root / "term.bin") == sha256_file(src)


def test_started_with_sigint_ignored_ctrl_c_is_ignored_and_sigterm_pauses(
    cli, slow_server, tmp_path, home, chunk_gate
):
    """A background job (``nbupload put ... &`` from a script) does not stop on the terminal's
    Ctrl-C: it keeps uploading; SIGTERM still pauses it cleanly."""
    src = make_file(tmp_path / "bg.bin", 6_000_000)
    gate = chunk_gate(slow_server.url, passes=1)  # one chunk at a time, as the test lets them
    proc = cli.popen("put", str(src), gate.upload_url, "--chunk-size", "256KiB", sigint="ignore")
    try:
        wait_for(lambda: journal_acked(home) >= CHUNK, timeout=60)
        proc.send_signal(signal.SIGINT)
        at_sigint = journal_acked(home)
        gate.allow(1)  # one more chunk: only an upload still going takes it
        wait_for(lambda: journal_acked(home) >= at_sigint + CHUNK, timeout=60)  # still uploading
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err
    [entry] = journal_files(home)
    assert f"paused; resume with: nbupload resume {entry.stem}" in err and "Traceback" not in err
    gate.open()
    r = cli("resume", "--all", "--quiet")
    assert r.returncode == 0, r.stderr
    assert sha256_file(slow_server.root / "bg.bin") == sha256_file(src)


def test_two_resume_processes_one_wins(cli, crawl_server, tmp_path, home, chunk_gate):
    slow_server = crawl_server
    src = make_file(tmp_path / "two.bin", 2_500_000)  # ~7 s left at 300 kB/s: both resumers meet
    gate = chunk_gate(slow_server.url, passes=1)  # one chunk, then held: unfinished at the kill
    proc = cli.popen("put", str(src), gate.upload_url, "--chunk-size", "256KiB", "--quiet")
    sigkill_when(proc, lambda: journal_acked(home) >= CHUNK, timeout=60, reap=10)
    gate.open()
    task_id = journal_files(home)[0].stem
    a, b = cli.popen("resume", task_id, "--quiet"), cli.popen("resume", task_id, "--quiet")
    results = []
    for p in (a, b):
        _out, err = p.communicate(timeout=60)
        results.append((p.returncode, err))
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser_err = next(err for code, err in results if code == 1)
    assert "being uploaded by another process" in loser_err
    assert sha256_file(slow_server.root / "two.bin") == sha256_file(src)


def test_rm_forgets_an_unfinished_task(cli, slow_server, tmp_path, home, chunk_gate):
    src = make_file(tmp_path / "rm.bin", 1_500_000)
    gate = chunk_gate(slow_server.url, passes=0)  # every chunk held: unfinished at the kill
    proc = cli.popen("put", str(src), gate.upload_url, "--chunk-size", "256KiB", "--quiet")
    sigkill_when(proc, lambda: journal_files(home), timeout=60, reap=10)
    task_id = journal_files(home)[0].stem
    r = cli("ls", "--json")
    assert [t["id"] for t in json.loads(r.stdout)] == [task_id]
    r = cli("rm", task_id)
    assert r.returncode == 0 and journal_files(home) == []
    assert "no unfinished uploads" in cli("ls").stdout


def test_demo_runs_quickly(cli):
    t0 = time.monotonic()
    r = cli("demo", "--size", "4MiB", timeout=90)
    took = time.monotonic() - t0
    print(f"\nnbupload demo --size 4MiB took {took:.1f} s")
    assert r.returncode == 0, r.stderr
    assert "all checks passed" in r.stdout and r.stdout.count(" OK") == 2
    assert "paused at" in r.stdout and "matches the server's hash" in r.stdout


def test_python_api_pauses_at_exit_and_the_cli_resumes(cli, slow_server, tmp_path, home, chunk_gate):
    import subprocess
    import sys

    src = make_file(tmp_path / "api.bin", 1_500_000)
    gate = chunk_gate(slow_server.url, passes=1)  # one chunk, then held: unfinished at the exit
    script = (
        "import time, nbupload\n"
        f"t = nbupload.upload({str(src)!r}, {gate.upload_url!r}, chunk_size=256 << 10)\n"
        "while t.acked < 256 << 10: time.sleep(0.02)\n"
        "print(t.id)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=False,
    )
    task_id = r.stdout.strip()
    assert r.returncode == 0 and f"paused at exit; resume with: nbupload resume {task_id}" in r.stderr
    gate.open()
    r = cli("resume", task_id, "--quiet")
    assert r.returncode == 0, r.stderr
    assert sha256_file(slow_server.root / "api.bin") == sha256_file(src)


def test_rate_options_parse_for_put_and_the_magic():
    from nbupload.cli import build_parser
    from nbupload.cli.upload import engine_settings

    opts = put_options(put_parser("%upload").parse_args(["f", "http://h/u", "--limit-rate", "8MiB/s"]))
    assert opts["limit_rate"] == 8 << 20
    args = build_parser().parse_args(["put", "f", "http://h/u", "--max-rate", "10MB"])
    assert engine_settings(args)["max_rate"] == 10_000_000
    args = build_parser().parse_args(["resume", "--all", "--max-rate", "2MB"])
    assert engine_settings(args)["max_rate"] == 2_000_000


def test_put_with_a_rate_cap_stays_under_it(cli, server, tmp_path):
    src = make_file(tmp_path / "capped.bin", 1_000_000)
    began = time.monotonic()
    r = cli("put", str(src), server.upload_url, "--limit-rate", "2MB", "--max-rate", "400kB", "-q")
    elapsed = time.monotonic() - began
    assert r.returncode == 0, r.stderr
    assert sha256_file(server.root / "capped.bin") == sha256_file(src)
    # the lower cap wins: 1 MB at 400 kB/s cannot take much less than 2.5 s
    assert src.stat().st_size / elapsed <= 400_000 * 1.1
    r = cli("put", str(src), server.upload_url, "--limit-rate", "fast")
    assert r.returncode == 2 and "invalid rate 'fast'" in r.stderr


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("Authorization Bearer s3cr3t", "invalid header: expected 'Name: value'"),
        ("X-Ünï: s3cr3t", "invalid header name 'X-Ünï'"),
        ("X-Trace: s3cr3t-café", "the value of header 'X-Trace' must be printable ASCII"),
    ],
)
def test_a_bad_header_is_a_usage_error_that_never_echoes_its_value(tmp_path, header, says):
    src = tmp_path / "h.txt"
    src.write_text("hi")
    done = run_cli("put", str(src), "http://127.0.0.1:9/upload", "--header", header, home=tmp_path / "home")
    assert done.returncode == 2, done
    assert says in done.stderr and "s3cr3t" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
