"""Rows update while a cell runs, under the installed ipykernel (7) and under ipykernel 6.

A real kernel (jupyter_client) loads the extension, starts a throttled upload with its row
displayed, then runs ``time.sleep``. The test counts the row's widget updates (``comm_msg``
on IOPub whose state carries ``data-acked``) that arrive while the sleeping cell is still
running: the pump sends them from its own thread, so they must not wait for the cell. The
ipykernel 6 kernel runs in a virtualenv the test makes (``--system-site-packages``, then
``pip install 'ipykernel<7'``, from pip's cache when it can); the rest (ipywidgets, httpx,
...) comes from this environment through a ``.pth`` file, which Python reads *after* the
virtualenv's own site-packages, so the kernel imports ipykernel 6 (with this environment on
``PYTHONPATH`` it imported ipykernel 7 again, and the "ipykernel 6" test ran ipykernel 7).
"""

from __future__ import annotations

import os
import queue
import re
import sys
import time
from pathlib import Path

import pytest

from tests.support.kernels import REPO, kernel_python_with_ipykernel6

ACKED = re.compile(r'data-acked="(\d+)"')


def _live_updates_during_sleep(python: str, tmp_path: Path, major: int) -> list[int]:
    import json

    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    src = tmp_path / "live.bin"
    src.write_bytes(os.urandom(4 * 1024 * 1024))
    env = dict(os.environ, NBUPLOAD_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO))
    # a kernelspec for ``python`` (jupyter_client 8 ignores ``kernel_cmd``: it used to run the
    # default kernel, so the "ipykernel 6" test ran ipykernel 7)
    spec_dir = tmp_path / "kernels" / "under-test"
    spec_dir.mkdir(parents=True)
    argv = [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "t", "language": "python"})
    )
    km = KernelManager(
        kernel_name="under-test",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]),
    )
    km.start_kernel(env=env, cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        printed: list[str] = []

        def hook(msg: dict) -> None:
            if msg["header"]["msg_type"] == "stream":
                printed.append(msg["content"]["text"])

        version = kc.execute_interactive(
            "import ipykernel; print(ipykernel.__version__)", timeout=30, output_hook=hook
        )
        assert version["content"]["status"] == "ok"
        assert "".join(printed).strip().split(".")[0] == str(major), printed  # the kernel we meant
        setup = (
            "%load_ext nbupload\n"
            f"%upload server start --root {tmp_path / 'srv'} --throttle 256KiB\n"
            f"%upload {src} --chunk-size 64KiB\n"
        )
        reply = kc.execute_interactive(setup, timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
        msg_id = kc.execute("import time\ntime.sleep(6)\nprint('slept')")
        during: list[int] = []
        running = True
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                msg = kc.get_iopub_msg(timeout=1)
            except queue.Empty:  # keep waiting for the cell to end
                msg = None
            if msg is None:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream" and "slept" in msg["content"].get("text", ""):
                running = False
            if (
                kind == "status"
                and msg["parent_header"].get("msg_id") == msg_id
                and msg["content"]["execution_state"] == "idle"
            ):
                break
            if kind == "comm_msg" and running:
                value = str(msg["content"].get("data", {}).get("state", {}).get("value", ""))
                found = ACKED.search(value)
                if found:
                    during.append(int(found.group(1)))
        return during
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _check(during: list[int]) -> None:
    growing = sorted(set(during))
    assert len(growing) >= 3 and growing[-1] > growing[0], f"row updates during the sleeping cell: {during}"


def test_rows_update_while_a_cell_sleeps_under_the_installed_ipykernel(tmp_path):
    import ipykernel

    during = _live_updates_during_sleep(sys.executable, tmp_path, ipykernel.version_info[0])
    _check(during)


@pytest.mark.slow
def test_rows_update_while_a_cell_sleeps_under_ipykernel_6(tmp_path):
    python = kernel_python_with_ipykernel6(tmp_path / "ipykernel6")
    during = _live_updates_during_sleep(python, tmp_path, 6)
    _check(during)
