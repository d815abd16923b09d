"""Files with names that break naive multipart parsers, uploaded end to end with ``nbupload.upload``.

A file named ``weird\\`` once went out as ``filename="weird\\"``, the server's parser read
``\\"`` as an escaped quote, the ``range`` parameter vanished into the name, and every chunk
was stored as a whole file called ``300000``: the task ended ``done``, the data was lost.
"""

from __future__ import annotations

import os

import pytest

import nbupload
from nbupload.engine import TaskState
from nbupload.server import start_server
from tests.support.helpers import CREDENTIALS, make_file, sha256_file, wait_for

AK, SK = next(iter(CREDENTIALS.items()))
SIZE = 300_000
CHUNK = 65536


@pytest.fixture
def engine(make_engine):
    """Chunks pinned at ``CHUNK`` (``chunk_max`` = ``chunk_size``): the tests count one request per chunk."""
    return make_engine(chunk_size=CHUNK)


def _files_under(root) -> list[str]:
    """The stored files, without the server's own ``.partial``/``.wcs`` bookkeeping."""
    found = (os.path.relpath(os.path.join(d, n), root) for d, _, names in os.walk(root) for n in names)
    return sorted(p for p in found if not p.startswith("."))


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("weird\\", "weird"),  # the server keeps the last non-empty component of a \-path
        ('a"b; range="0-1"', 'a"b; range="0-1"'),
        ("100%22 %25 é.bin", "100%22 %25 é.bin"),
        ("\\\\server\\share\\x.bin", "x.bin"),
    ],
)
def test_uploader_stores_an_odd_name_whole(server, engine, tmp_path, name, stored):
    src = make_file(tmp_path / name, SIZE, seed=14)
    assert src.name == name
    task = nbupload.upload(str(src), server.upload_url, chunk_size=CHUNK, engine=engine, wait=True)
    snap = task.snapshot()
    assert snap.state is TaskState.DONE and snap.acked == snap.total == SIZE
    assert snap.result["mode"] == "resumable" and snap.result["stored"] == stored
    assert _files_under(server.root) == [stored]  # no stray partial or mis-named file
    assert sha256_file(server.root / stored) == sha256_file(src)
    stats = server.stats()["uploader"]
    assert stats["requests"] == 1 + 5 and stats["errors"] == 0  # one query, ceil(300000 / 65536) chunks


def test_wcs_append_stores_an_odd_name_whole(server, engine, tmp_path):
    src = make_file(tmp_path / "weird\\", SIZE, seed=15)
    key = 'odd/we"ird; x=%22 é.bin'
    task = nbupload.upload(
        str(src),
        server.url,
        protocol="wcs-append",
        chunk_size=CHUNK,
        access_key=AK,
        secret_key=SK,
        scope="bucket",
        key=key,
        engine=engine,
        wait=True,
    )
    assert task.state is TaskState.DONE and task.result["verified"] and task.result["key"] == key
    assert _files_under(server.root / "bucket") == [key]
    assert sha256_file(server.root / "bucket" / key) == sha256_file(src)
    assert server.stats()["wcs"]["requests"] == 5  # ceil(300000 / 65536) appends, each carrying the key


def test_a_name_that_is_not_utf8_uploads_and_resumes_from_the_journal(tmp_path, make_engine, chunk_gate):
    """A Latin-1 name on a UTF-8 system (``os.fsdecode`` leaves its byte as a lone surrogate).

    The journal once failed to write it (a bare ``UnicodeEncodeError`` from ``upload``); now
    the entry keeps the path losslessly, a second engine reopens the same file, and the
    server stores the name with U+FFFD where the byte was, as browsers send it.
    """
    src = make_file(tmp_path / os.fsdecode(b"caf\xe9.bin"), SIZE, seed=16)
    with start_server(root=tmp_path / "root", throttle=200_000) as slow:
        first = make_engine(chunk_size=CHUNK)
        gate = chunk_gate(slow.url, passes=1)  # one chunk, then held: still unfinished at the pause
        task = nbupload.upload(str(src), gate.upload_url, chunk_size=CHUNK, engine=first)
        wait_for(lambda: task.acked > 0, timeout=60)
        task.pause()
        wait_for(lambda: task.state is TaskState.PAUSED, timeout=60)
        first.shutdown(wait=True, timeout=10)
        gate.open()

        second = make_engine(chunk_size=CHUNK)
        (entry,) = second.unfinished()
        assert entry.path == str(src) and os.fsencode(entry.path).endswith(b"caf\xe9.bin")
        (resumed,) = second.resume(entry.id)
        resumed.wait(timeout=120)
        assert resumed.state is TaskState.DONE, resumed.error
        stored = slow.root / "caf\ufffd.bin"
        assert sha256_file(stored) == sha256_file(src)
        assert _files_under(slow.root) == ["caf\ufffd.bin"]
