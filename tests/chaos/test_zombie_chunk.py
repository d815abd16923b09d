"""A chunk stuck on a dead connection must not keep a whole file from its final name.

Found by the fault campaign (seed 1, a ``stall`` run): the engine's stall watchdog abandons a
request whose connection stopped moving and sends the chunk again on a new connection; the
upload completes and the engine reports it done. But the server still has the first
attempt's part open (the dead connection is not closed yet: a middlebox, a lost FIN, here
the stalled proxy), and it did not move the assembled file into place while any chunk of it
was being written, so the file stayed invisible until that connection ended, which on a
real network may be never.
"""

from __future__ import annotations

import os
import time

import pytest
from chaos_campaign import chaos_server

from tests.support.proxy import Fault, FaultProxy


@pytest.mark.timeout(120)
def test_file_is_in_place_when_the_task_is_done_despite_a_zombie_chunk(tmp_path, make_engine):
    server = chaos_server(tmp_path / "root").start()
    proxy = FaultProxy(*server.address)
    proxy.add(Fault(stall_after=50_000, stall_for=60))  # the first connection freezes mid-chunk
    src = tmp_path / "zombie.bin"
    data = os.urandom(300_000)
    src.write_bytes(data)
    # One stream and fixed chunks: the fault counts the bytes of the first connection, and with
    # several streams that connection need not carry 50 000 of them (seen: 4 connections, no
    # stall). chaos_campaign.py covers stalls with several streams.
    try:
        with make_engine(
            chunk_size=128 * 1024,
            chunk_max=128 * 1024,
            streams=1,
            workers=1,
            stall_timeout=1.0,
            read_timeout=5,
            backoff_cap=0.2,
        ) as engine:
            task = engine.submit(str(src), proxy.url + "/upload", filename=src.name)
            snap = task.wait(60)
            assert snap.state.value == "done", snap.error
            assert proxy.counters.stalls == 1
            target = server.root / src.name
            deadline = time.monotonic() + 20  # well inside the 60 s the zombie connection stays stalled
            while not target.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert target.exists(), "the task is done but its file is not under its final name"
            assert target.read_bytes() == data
    finally:
        proxy.close()
        server.stop()
