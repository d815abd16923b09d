"""Upload sources of every kind and change detection (engine/sources.py), no network."""

from __future__ import annotations

import io
import os
import threading

import pytest

from nbupload.engine.sources import FileIdentity, SourceChangedError, open_source, reopen_path


def test_sources_of_every_kind(tmp_path):
    data = os.urandom(200_000)
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    opened = open_source(p)
    assert opened.persistent and opened.size == len(data) and opened.filename == "f.bin"
    assert opened.source.pread(10, 5) == data[5:15]
    opened.close()
    for obj in (data, bytearray(data), memoryview(data)):
        o = open_source(obj)
        assert not o.persistent and o.source.pread(10, 199_990) == data[199_990:]
    with open(p, "rb") as f:
        o = open_source(f)
        assert o.persistent and o.source.pread(4, 100) == data[100:104]
        o.close()
        assert not f.closed  # the caller's file stays theirs
    o = open_source(io.BytesIO(data))
    assert o.size == len(data) and o.source.pread(3, 3) == data[3:6]
    r, w = os.pipe()
    threading.Thread(target=lambda: (os.write(w, data[:50_000]), os.close(w)), daemon=True).start()
    with os.fdopen(r, "rb") as pipe:
        o = open_source(pipe)
    assert o.size == 50_000 and o.source.pread(5, 0) == data[:5] and not o.persistent
    o.close()

    class Composite:  # the notebook front end's shape: a header plus an array's memory
        def __init__(self, head: bytes, body: bytes) -> None:
            self.head, self.body, self.size = head, memoryview(body), len(head) + len(body)

        def pread(self, n: int, offset: int) -> bytes:
            whole = self.head + bytes(self.body)
            return whole[offset : offset + n]

    o = open_source(Composite(b"HEAD", data[:100]))
    assert o.size == 104 and o.source.pread(6, 2) == b"AD" + data[:4]
    with pytest.raises(TypeError, match="cannot upload a int"):
        open_source(42)
    with pytest.raises(FileNotFoundError, match="no such file"):
        open_source(tmp_path / "missing")


def test_changed_file_is_detected(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"x" * 100)
    ident = FileIdentity.of(os.stat(p))
    reopen_path(str(p), ident).close()
    with open(p, "ab") as f:
        f.write(b"more")
    with pytest.raises(SourceChangedError, match="size 100 -> 104"):
        reopen_path(str(p), ident)
    opened = open_source(p)
    os.utime(p, ns=(1, 1))
    with pytest.raises(SourceChangedError, match="changed since the upload started"):
        opened.check_unchanged()
    opened.close()
