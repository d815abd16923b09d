"""A source file modified mid-upload is detected and reported, never stored mixed.

The link is slowed by the fault proxy, and a gate (tests/support/gate.py) holds every chunk
after the first MiB until the change is made, so the change lands while chunks are still to go
out whatever the speed of the machine; it is made both in a region already sent and in one not
sent yet.
"""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from chaos_campaign import BUCKET, chaos_server, sha256_path, wcs_submit

from tests.support.helpers import wait_for
from tests.support.proxy import Fault, FaultProxy

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def slow_link(tmp_path_factory):
    base = tmp_path_factory.mktemp("changes")
    server = chaos_server(base / "root").start()
    proxy = FaultProxy(*server.address, default=Fault(rate=2 * MiB))
    try:
        yield server, proxy, base
    finally:
        proxy.close()
        server.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("protocol", ["uploader", "wcs-append"])
@pytest.mark.parametrize("where", ["already-sent", "not-sent-yet"])
def test_modified_source_fails_with_a_clear_error(
    slow_link, make_engine, tmp_path, chunk_gate, protocol, where
):
    server, proxy, _base = slow_link
    gate = chunk_gate(proxy.url, passes=4)  # 1 MiB, then held until the file has changed
    src = tmp_path / f"{protocol}-{where}.bin"
    original = os.urandom(3 * MiB)
    src.write_bytes(original)
    time.sleep(0.02)  # the change below must get a later mtime than the file's creation
    engine = make_engine(
        chunk_size=256 * 1024,
        # fixed chunks: the change must land while bytes of the file are still unsent (a
        # chunk grown to hold the rest of the file could already be in the socket buffers,
        # and what has left cannot be called back; docs/engine.md, "Sources")
        chunk_max=256 * 1024,
        workers=2,
        stall_timeout=5,
    )
    try:
        if protocol == "uploader":
            task = engine.submit(str(src), gate.upload_url, filename=src.name)
            target = server.root / src.name
        else:
            task = engine.submit(str(src), gate.url, **wcs_submit(src.name))
            target = server.root / BUCKET / src.name
        wait_for(lambda: task.acked >= MiB, timeout=60)
        offset = 1000 if where == "already-sent" else len(original) - 1000
        with open(src, "r+b") as f:  # same size, a few bytes changed in place
            f.seek(offset)
            f.write(b"CHANGED!")
        gate.open()  # what it held is cut: the engine reads the file again
        snap = task.wait(60)
    finally:
        engine.shutdown(wait=True, timeout=10)
    assert snap.state.value == "failed", f"a changed source was uploaded: {snap.state} {snap.error}"
    assert "changed" in str(snap.error) and str(src) in str(snap.error)
    if protocol == "uploader":
        assert not target.exists(), "a file is under its final name although its source changed mid-upload"
    else:  # appends already made stay, but only as a prefix of the original bytes
        data = target.read_bytes() if target.exists() else b""
        assert original.startswith(data)
    assert sha256_path(src) != hashlib.sha256(original).hexdigest()
