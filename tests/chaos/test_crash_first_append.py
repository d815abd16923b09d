"""A server killed during the first append to a new object must not strand the upload.

Found by the fault campaign (seed 1, ``server-sigkill`` early in WCS runs): the first append
creates the object file and writes its sidecar (what makes it *appendable*) only when the
append commits. Killed in between, the server restarted with an object file and no sidecar,
which it then took for a ``Normal`` object: every append, the resumed one included, got
409 "not appendable", and a truncated object stayed under the final name.
"""

from __future__ import annotations

import os
import time

import pytest
from chaos_burst import BurstFront
from chaos_campaign import BUCKET, chaos_server, wcs_submit

from tests.support.proxy import FaultProxy


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kill_at", [1_000, 60_000, 200_000])
def test_sigkill_during_the_first_append(tmp_path, make_engine, kill_at):
    server = chaos_server(tmp_path / "root").start()
    proxy = FaultProxy(*server.address)
    front = BurstFront(("127.0.0.1", proxy.port))
    killed = []

    def crash() -> None:  # runs in the front's thread, before another byte of the append moves
        opened = tmp_path / "root" / BUCKET / "first.log"
        deadline = time.monotonic() + 10
        while not opened.exists() and time.monotonic() < deadline:  # the server opens the new object
            time.sleep(0.01)
        server.kill()
        server.restart()
        proxy.target = server.address
        killed.append(True)

    front.at_bytes(kill_at, crash)
    src = tmp_path / "first.log"
    data = os.urandom(300_000)
    src.write_bytes(data)
    try:
        with make_engine(chunk_size=256 * 1024, stall_timeout=2) as engine:
            task = engine.submit(str(src), front.url, **wcs_submit(src.name))
            snap = task.wait(60)
            assert killed, "the server was never killed"
            assert snap.state.value == "done", snap.error
            assert (server.root / BUCKET / src.name).read_bytes() == data
    finally:
        front.close()
        proxy.close()
        server.stop()
