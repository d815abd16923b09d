"""Kernel state across a restart: a killed kernel's unfinished task is offered and resumed."""

from __future__ import annotations

import hashlib
import os

from nbupload.engine import EngineConfig
from nbupload.server import start_server
from tests.support.ipyproc import first_kernel, ipython, kill_once_started, output_of


def test_unfinished_task_is_offered_and_resumed_after_a_kernel_dies(tmp_path, chunk_gate):
    home = tmp_path / "home"
    server = start_server(root=tmp_path / "srv", throttle=256 * 1024)
    try:
        data = os.urandom(768 * 1024)
        src = tmp_path / "restart.bin"
        src.write_bytes(data)
        gate = chunk_gate(server.url, passes=1)  # one chunk, then held: unfinished at the kill
        first = first_kernel(
            f"{src} {gate.upload_url} --chunk-size 64KiB --chunk-max 64KiB -o -q", home, tmp_path
        )
        task_id = kill_once_started(first, timeout=120)
        gate.open()

        second = ipython(
            "%load_ext nbupload\n"
            "%upload list\n"
            "%upload resume all\n"
            "import nbupload\n"
            "for t in nbupload.tasks(): print('FINAL', t.id, t.wait(60).state.value)\n",
            home,
            tmp_path,
            "second",
        )
        out = output_of(second, timeout=120)
        assert f"1 unfinished upload from a previous session ({task_id})" in out, out
        assert "`%upload resume all`" in out
        port = gate.port  # the task's URL: through the gate
        assert f"restart.bin [{task_id}]" in out and f"to 127.0.0.1:{port}" in out  # %upload list
        assert f"resumed 1 task: {task_id}" in out, out
        assert f"FINAL {task_id} done" in out, out
        # resumed, not restarted: the server got each byte about once (the chunks in flight at the
        # kill, one per stream, may repeat; --chunk-max keeps them at 64 KiB)
        received = server.stats()["uploader"]["bytes"]
        assert received <= len(data) + EngineConfig().streams * 64 * 1024, received
        stored = (tmp_path / "srv" / "restart.bin").read_bytes()
        assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()
    finally:
        server.stop()
