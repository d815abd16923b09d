"""``nbupload.follow``: a growing file kept in step with a WCS object, against the real server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import nbupload
from nbupload.protocols import wcs
from tests.support.helpers import wait_for

WRITER = textwrap.dedent(
    """
    import sys, time
    path, lines = sys.argv[1], int(sys.argv[2])
    with open(path, "a", buffering=1) as f:
        for i in range(lines):
            f.write(f"epoch {i} loss {1 / (i + 1):.5f}\\n")
            time.sleep(0.01)
    """
)


def _object(server, key="run/train.log"):
    return server.root / "logs" / key


def _follow(server, creds, path, **kw):
    return nbupload.follow(path, server.url, key="run/train.log", interval=0.1, **creds, **kw)


def test_a_file_written_by_another_process_is_followed(server, creds, tmp_path):
    log = tmp_path / "train.log"
    log.write_text("")
    seen: list[int] = []
    f = _follow(server, creds, log, on_append=seen.append)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log), "300"])
    try:
        # the object grows while the file is written
        wait_for(lambda: _object(server).exists() and _object(server).stat().st_size > 0, timeout=60)
        assert writer.wait(60) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    f.stop()
    assert f.state == "stopped" and f.error is None
    assert _object(server).read_bytes() == log.read_bytes()
    assert f.verified and f.hash == wcs.etag_of(log.read_bytes())
    assert seen and seen[-1] == log.stat().st_size and seen == sorted(seen)


def test_idle_ends_the_follow(server, creds, tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(b"one line\n")
    f = _follow(server, creds, log, idle=0.3).wait(60)
    assert f.state == "idle" and f.verified
    assert _object(server).read_bytes() == b"one line\n"


def test_following_again_goes_on_where_the_server_is(server, creds, tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(b"a" * 5000)
    f = _follow(server, creds, log).stop()
    assert f.position == 5000
    with open(log, "ab") as fh:
        fh.write(b"b" * 3000)
    g = _follow(server, creds, log)
    assert g.started == 5000
    g.stop()
    assert _object(server).read_bytes() == log.read_bytes() and g.verified
    assert g.position == 8000


def test_rotation_by_rename_is_reported_never_appended(server, creds, tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(b"old 1\n")
    f = _follow(server, creds, log)
    wait_for(lambda: f.position == 6, timeout=60)
    os.rename(log, tmp_path / "train.log.1")
    log.write_bytes(b"new file, new content\n")
    f.wait(60)
    assert f.state == "rotated" and "rotated" in str(f.error) and f.error.code == "rotated"
    assert _object(server).read_bytes() == b"old 1\n"


@pytest.mark.parametrize("new", [b"x", b"a much longer content written after truncating\n"])
def test_truncation_or_rewrite_is_reported_never_appended(server, creds, tmp_path, new):
    log = tmp_path / "train.log"
    log.write_bytes(b"first content\n")
    f = _follow(server, creds, log)
    wait_for(lambda: f.position == 14, timeout=60)
    with open(log, "r+b") as fh:  # in place, as copytruncate does
        fh.truncate(0)
        fh.write(new)
    f.wait(60)
    assert f.state == "truncated" and f.error.code == "truncated"
    assert _object(server).read_bytes() == b"first content\n"


def test_another_files_object_is_refused(server, creds, tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(b"mine\n" * 10)
    _follow(server, creds, log).stop()
    other = tmp_path / "other.log"
    other.write_bytes(b"someone else's log, longer than fifty bytes for sure\n")
    with pytest.raises(nbupload.AppendHashMismatch):
        _follow(server, creds, other)
    short = tmp_path / "short.log"
    short.write_bytes(b"tiny")
    with pytest.raises(nbupload.FollowError, match="more than"):
        _follow(server, creds, short)
    assert _object(server).read_bytes() == b"mine\n" * 10
