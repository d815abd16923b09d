"""An append stuck on a dead connection must not lock its object for that connection's life.

The WCS handler serializes appends to one object with a lock held for the whole request.
When the engine's stall watchdog gives up on a connection whose peer went silent (a dead
link, a lost FIN, here a stalled proxy) and sends the append again on a new connection,
the server is still reading the first attempt's body, which holds the lock; the new
attempt waits behind it for as long as the dead connection lives, on a real network
possibly forever, and the engine eventually gave up ("gave up after 9 tries without
progress"). The server now gives up a body that sends nothing for
the server's ``body_timeout`` seconds (60 by default; 1 here).
"""

from __future__ import annotations

import os

import pytest
from chaos_campaign import BUCKET, chaos_server, wcs_submit

from tests.support.proxy import Fault, FaultProxy


@pytest.mark.timeout(120)
def test_a_dead_connection_does_not_hold_the_object_lock(tmp_path, make_engine):
    server = chaos_server(
        tmp_path / "root", body_idle_timeout=1.0
    )  # the server's 60 s, shortened for the test
    server.start()
    proxy = FaultProxy(*server.address)
    # The first append freezes mid-body for longer than the wait below: if the retry waited for the
    # dead connection's lock, the task could not finish in time. Whichever gives up first, the
    # client's stall watchdog or the server's body timeout (408, retried), the task goes on.
    proxy.add(Fault(stall_after=50_000, stall_for=120))
    src = tmp_path / "zombie.log"
    data = os.urandom(300_000)
    src.write_bytes(data)
    try:
        with make_engine(chunk_size=128 * 1024, stall_timeout=1.0, read_timeout=5, backoff_cap=0.2) as engine:
            task = engine.submit(str(src), proxy.url, **wcs_submit(src.name))
            snap = task.wait(60)
            assert snap.state.value == "done", (
                f"the retry waited for the dead connection's lock? {snap.error}"
            )
            assert (server.root / BUCKET / src.name).read_bytes() == data
    finally:
        proxy.close()
        server.stop()
