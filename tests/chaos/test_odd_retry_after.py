"""A 503 whose ``Retry-After`` is odd (a superscript digit, an absurd number, a date far
ahead) is still a 503: the engine retries and the upload lands, instead of failing the task
with an internal error."""

from __future__ import annotations

import os

import pytest
from chaos_burst import Burst, BurstFront
from chaos_campaign import chaos_server


@pytest.mark.timeout(120)
@pytest.mark.parametrize("retry_after", ["\u00b2", "9" * 400, "Fri, 31 Dec 9999 23:59:59 GMT", "soon"])
def test_odd_retry_after_is_retried(tmp_path, make_engine, retry_after):
    server = chaos_server(tmp_path / "root").start()
    front = BurstFront(server.address)
    front.arm(2, Burst(503, retry_after))
    src = tmp_path / "odd.bin"
    data = os.urandom(100_000)
    src.write_bytes(data)
    try:
        with make_engine(chunk_size=64 * 1024, backoff_cap=0.1, retries=5) as engine:
            task = engine.submit(str(src), front.url + "/upload", filename=src.name)
            snap = task.wait(60)
            assert snap.state.value == "done", snap.error
            assert len(front.injected) == 2
            assert (server.root / src.name).read_bytes() == data
    finally:
        front.close()
        server.stop()
