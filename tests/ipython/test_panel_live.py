"""The panel driven by a real engine and server, without a frontend: form, buttons, pump."""

from __future__ import annotations

import hashlib
import os
import time

from nbupload.engine.state import TaskState
from nbupload.ipython.extension import current_session
from nbupload.server import start_server
from tests.support.helpers import wait_for


def pumped(session, predicate):
    """``predicate`` as seen once the panel has applied what the engine sent (for
    :func:`~tests.support.helpers.wait_for`: the panel only changes when pumped)."""

    def check():
        session.panel_controller.flush()
        return predicate()

    return check


def test_panel_form_buttons_and_coalesced_updates(shell, run, tmp_path, chunk_gate):
    server = start_server(root=tmp_path / "srv", throttle=512 * 1024, max_file_size=2 << 20)
    try:
        data = os.urandom(1024 * 1024)
        src = tmp_path / "panel.bin"
        src.write_bytes(data)
        run(shell, "%upload panel")
        session = current_session(shell)
        panel, form = session.panel, session.form
        assert panel is not None and "nbupload-panel" in panel._dom_classes

        gate = chunk_gate(server.url, passes=2)  # two chunks, then held: unfinished at the pause
        form.path.value = str(src)
        form.url.value = gate.upload_url
        form.chunk.value = "64KiB"
        form.fields.value = "album=holiday"
        form.start.click()
        assert "started" in form.message.value, form.message.value
        (task,) = [t for t in session.engine.tasks() if t.name == "panel.bin"]
        wait_for(
            pumped(session, lambda: task.id in session.rows and session.rows[task.id].snapshot.acked > 0),
            what="the row shows acknowledged bytes",
        )
        row = session.rows[task.id]
        assert row in panel.rows_box.children
        assert "nbupload-segment" in row.bar.value

        row.buttons["pause"].click()
        wait_for(pumped(session, lambda: row.snapshot.state is TaskState.PAUSED), what="the row paused")
        assert 'data-state="paused"' in row.state.value and not row.buttons["resume"].disabled
        paused_at = row.snapshot.acked
        assert 0 < paused_at < len(data)

        gate.open()
        started = time.monotonic()
        row.buttons["resume"].click()
        wait_for(pumped(session, lambda: row.snapshot.state is TaskState.DONE), what="the row done")
        elapsed = time.monotonic() - started
        assert (
            row.bar.value.count('class="nbupload-segment"') == 1 and 'data-acked="1048576"' in row.bar.value
        )
        assert (
            hashlib.sha256((tmp_path / "srv" / "panel.bin").read_bytes()).digest()
            == hashlib.sha256(data).digest()
        )
        # at most ~10 updates a second for this task, plus its state changes
        assert session.pump.applied_updates <= 10 * (elapsed + 5) + 10

        # a file picked in the browser goes through the same engine
        form.picker._handle_custom_msg(
            {"kind": "begin", "file": "f1", "name": "picked.txt", "size": 5, "last_modified": 0}, []
        )
        form.picker._handle_custom_msg({"kind": "slice", "file": "f1", "offset": 0}, [memoryview(b"hello")])
        (picked,) = [t for t in session.engine.tasks() if t.name == "picked.txt"]
        picked.wait(10)
        assert (tmp_path / "srv" / "picked.txt").read_bytes() == b"hello"

        # a failing upload shows the server's code inline
        big = tmp_path / "panel-big.bin"
        big.write_bytes(os.urandom(3 << 20))
        form.path.value = str(big)
        form.start.click()
        (failed,) = [t for t in session.engine.tasks() if t.name == "panel-big.bin"]
        wait_for(
            pumped(
                session,
                lambda: (
                    failed.id in session.rows and session.rows[failed.id].snapshot.state is TaskState.FAILED
                ),
            ),
            what="the too-big upload's row failed",
        )
        err = session.rows[failed.id].error.value
        assert (
            'class="nbupload-error"' in err
            and 'data-code="4002"' in err
            and "File exceeded max_file_size" in err
        )
        # 4002 can never succeed: Retry is disabled, Cancel is not
        assert session.rows[failed.id].buttons["retry"].disabled
        assert not session.rows[failed.id].buttons["cancel"].disabled
        failed_count = sum(r.snapshot.state is TaskState.FAILED for r in session.rows.values())
        assert (
            f"{len(session.rows)} tasks:" in panel.summary.value
            and f"{failed_count} failed" in panel.summary.value
        )

        form.path.value = str(tmp_path / "nope.bin")
        form.start.click()
        assert "nbupload-error" in form.message.value and "no such file" in form.message.value
    finally:
        server.stop()


def test_form_wcs_upload_to_the_demo_server(shell, run, tmp_path):
    run(shell, f"%upload server start --root {tmp_path / 'srv'}")
    run(shell, "%upload panel")
    session = current_session(shell)
    form = session.form
    assert form.url.value == session.server.handle.upload_url
    form.protocol.value = "wcs-append"
    assert form.url.value == session.server.base_url  # followed the protocol
    src = tmp_path / "form-wcs.bin"
    data = os.urandom(300 * 1024)
    src.write_bytes(data)
    form.path.value = str(src)
    form.chunk.value = "100KiB"
    form.start.click()
    assert "started" in form.message.value, form.message.value
    (task,) = [t for t in session.engine.tasks() if t.name == "form-wcs.bin"]
    assert task.wait(20).state is TaskState.DONE, task.error
    assert (tmp_path / "srv" / "demo" / "form-wcs.bin").read_bytes() == data
    form.url.value = "http://example.invalid/custom"
    form.protocol.value = "uploader"
    assert form.url.value == "http://example.invalid/custom"  # typed URLs are left alone


def test_steering_all(shell, run, tmp_path, capsys, chunk_gate):
    server = start_server(root=tmp_path / "srv", throttle=128 * 1024)
    try:
        paths = []
        for i in range(2):
            p = tmp_path / f"all-{i}.bin"
            p.write_bytes(os.urandom(512 * 1024))
            paths.append(p)
        gate = chunk_gate(server.url, passes=2)  # then held: neither finishes before `pause all`
        tasks = [run(shell, f"%upload {p} {gate.upload_url} --chunk-size 32KiB -o -q") for p in paths]
        run(shell, "%upload pause all")
        for t in tasks:
            assert t.wait(10).state is TaskState.PAUSED
        out = capsys.readouterr().out  # "all": this test's two (and any another test left running)
        assert "paused" in out and all(t.id in out for t in tasks), out
        run(shell, "%upload cancel all")
        for t in tasks:
            assert t.wait(10).state is TaskState.CANCELLED
        run(shell, f"%upload cancel {tasks[0].id}")  # already cancelled: nothing to do, no error
        assert not any((tmp_path / "srv" / p.name).exists() for p in paths)
    finally:
        server.stop()
