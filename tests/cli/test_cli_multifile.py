"""``nbupload put --file FIELD=PATH ...``: one multi-file uploader session, as a user runs it."""

from __future__ import annotations

import json

import httpx
import pytest

from nbupload.protocols import uploader
from nbupload.protocols.ranges import RangeSet
from nbupload.server import start_server
from tests.support.cliproc import journal_acked, journal_files, sigkill_when
from tests.support.helpers import make_file, sha256_file

CHUNK = 64 << 10


@pytest.fixture
def server(tmp_path):
    with start_server(root=tmp_path / "root") as srv:
        yield srv


@pytest.fixture
def slow_server(tmp_path):
    with start_server(root=tmp_path / "root", throttle=1_000_000) as srv:
        yield srv


def test_put_file_options_make_one_session(cli, server, tmp_path, home):
    a = make_file(tmp_path / "a.bin", 700_000, seed=1)
    b = make_file(tmp_path / "b.txt", 10, seed=2)
    r = cli("put", "--file", f"photo={a}", "--file", f"doc={b}", server.upload_url, "--field", "user=ann")
    assert r.returncode == 0, r.stderr
    assert sha256_file(server.root / "a.bin") == sha256_file(a)
    assert sha256_file(server.root / "b.txt") == sha256_file(b)
    assert "photo: a.bin" in r.stderr and "doc: b.txt" in r.stderr  # each field's outcome
    stats = server.stats()["uploader"]
    assert stats["bytes"] == 700_010 and stats["completed"] == 2
    assert journal_files(home) == []


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--file", "a={a}", "--file", "a={b}"], "field 'a' is given twice"),
        (["--file", "a={missing}"], "field 'a': no such file"),
        (["--file", "a b={a}"], "not a usable form field name"),
        (["--file", "noequals"], "expected FIELD=PATH"),
        (["--file", "a={a}", "-p", "wcs-append"], "wcs-append uploads one object per task"),
        (["--file", "a={a}", "--filename", "x"], "--name and --filename do not go with it"),
        (["{a}", "--file", "a={a}"], "either as PATH... or as --file FIELD=PATH"),
    ],
)
def test_put_file_usage_errors_are_clear(cli, tmp_path, args, match):
    (tmp_path / "a").write_bytes(b"x")
    (tmp_path / "b").write_bytes(b"y")
    paths = {"a": tmp_path / "a", "b": tmp_path / "b", "missing": tmp_path / "nope"}
    argv = [arg.format(**paths) for arg in args]
    r = cli("put", *argv, "http://127.0.0.1:9/upload")
    assert r.returncode == 2, r.stderr
    assert match in r.stderr and "Traceback" not in r.stderr


def test_sigkill_then_resume_sends_only_what_each_field_lacks(cli, slow_server, tmp_path, home, chunk_gate):
    a = make_file(tmp_path / "a.bin", 2_000_000, seed=1)
    b = make_file(tmp_path / "b.bin", 1_000_000, seed=2)
    c = make_file(tmp_path / "c.bin", 0)
    # five chunks (one may be c's empty one), then held: unfinished at the kill
    gate = chunk_gate(slow_server.url, passes=5)
    proc = cli.popen(
        "put",
        "--file",
        f"a={a}",
        "--file",
        f"b={b}",
        "--file",
        f"c={c}",
        gate.upload_url,
        "--chunk-size",
        "64KiB",
        "--chunk-max",
        "64KiB",
        "--streams",
        "2",
        "--quiet",
    )
    sigkill_when(proc, lambda: journal_acked(home) >= 4 * CHUNK, timeout=60, reap=10)
    gate.open()
    entry = json.loads(journal_files(home)[0].read_text())
    assert [f["name"] for f in entry["files"]] == ["a", "b", "c"]
    headers, body = uploader.prepare_query(entry["boundary"])
    answer = uploader.process_query_answer(
        200,
        httpx.post(slow_server.upload_url, headers=headers, content=body, timeout=30).content,
        entry["boundary"],
    )
    held = {name: answer.ranges_for(name) for name in ("a", "b")}
    lacking = 3_000_000 - sum(r.covered() for r in held.values())
    assert held["a"].covered() > 0 and held["b"].covered() > 0 and lacking > 0  # both fields cut part way
    before = slow_server.stats()["uploader"]
    r = cli("ls")
    assert entry["id"] in r.stdout and "a.bin, b.bin, c.bin" in r.stdout
    r = cli("resume", entry["id"], "--streams", "2")
    assert r.returncode == 0, r.stderr
    for p in (a, b, c):
        assert sha256_file(slow_server.root / p.name) == sha256_file(p)
    after = slow_server.stats()["uploader"]
    resent = after["bytes"] - before["bytes"]
    print(f"\nSIGKILL: the server lacked {lacking} bytes over the fields; the resume sent {resent}")
    assert after["duplicate_bytes"] == 0  # no byte any field held went again
    # What the resume sent is what the fields lacked (less any chunk the server finished after
    # the query above; more only the cut chunks' bytes it was still reading then, one per stream).
    assert lacking - 2 * CHUNK <= resent <= lacking + 2 * CHUNK
    assert after["bytes"] - 3_000_000 <= 2 * CHUNK  # overall: at most the cut chunks again
    assert journal_files(home) == []
    assert RangeSet.parse(entry["files"][0]["ranges"]).covered() <= held["a"].covered()
