"""%upload for real: a real IPython shell uploading over loopback to the reference server."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError

from nbupload.engine.state import TaskState
from nbupload.ipython.extension import current_session
from tests.support.helpers import wait_for
from tests.support.signals import running_in, sigint_raises_keyboard_interrupt


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(600 * 1024 + 123)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    return path, data


@pytest.fixture
def demo(shell, run, tmp_path, capsys):
    """The embedded server, started by the magic."""
    root = tmp_path / "srv"
    run(shell, f"%upload server start --root {root}")
    out = capsys.readouterr().out
    session = current_session(shell)
    assert session.server is not None and session.server.base_url in out
    assert session.server.secret_key not in out
    return session, root


def test_upload_wait_to_the_demo_server_default_url(demo, shell, run, data_file, capsys):
    session, root = demo
    path, data = data_file
    task = run(shell, f"%upload {path} --chunk-size 128KiB --wait -o")
    assert task.state is TaskState.DONE
    assert sha((root / "payload.bin").read_bytes()) == sha(data)
    snap = task.snapshot()
    assert str(snap.ranges) == f"0-{len(data)}" and snap.url == str(session.server.handle.upload_url)
    out = capsys.readouterr().out
    assert f"payload.bin [{task.id}]   0%" in out  # the row's plain-text repr, displayed at the start
    assert f"payload.bin [{task.id}] 100%|####################| 600 KiB/600 KiB done" in out  # at the end


def test_background_upload_leaves_the_kernel_free_and_can_be_steered(
    shell, run, tmp_path, capsys, chunk_gate
):
    from nbupload.server import start_server

    server = start_server(root=tmp_path / "srv", throttle=400 * 1024)
    try:
        path = tmp_path / "slow.bin"
        data = os.urandom(1024 * 1024)
        path.write_bytes(data)
        gate = chunk_gate(server.url, passes=2)  # two chunks, then held until the test opens it
        task = run(shell, f"%upload {path} {gate.upload_url} --chunk-size 128KiB -o -q")
        assert run(shell, "6 * 7") == 42  # a new cell runs while the upload (held at the gate) goes on
        assert task.state in (TaskState.QUEUED, TaskState.CONNECTING, TaskState.UPLOADING)
        wait_for(lambda: task.snapshot().acked > 0)
        run(shell, f"%upload pause {task.id}")
        task.wait(10)
        assert task.state is TaskState.PAUSED
        acked = task.snapshot().acked
        assert 0 < acked < len(data)
        run(shell, "%upload list")
        listing = capsys.readouterr().out
        assert f"slow.bin [{task.id}]" in listing and "paused" in listing
        gate.open()
        run(shell, f"%upload resume {task.id}")
        task.wait(60)
        assert task.state is TaskState.DONE
        assert sha((tmp_path / "srv" / "slow.bin").read_bytes()) == sha(data)
    finally:
        server.stop()


def test_interrupting_wait_pauses_the_task_resumably(shell, run, tmp_path, capsys, chunk_gate):
    from nbupload.server import start_server

    server = start_server(root=tmp_path / "srv", throttle=300 * 1024)
    try:
        path = tmp_path / "int.bin"
        data = os.urandom(900 * 1024)
        path.write_bytes(data)
        main = threading.main_thread().ident
        session = current_session(shell)
        gate = chunk_gate(server.url, passes=1)  # one chunk, then held: `--wait` cannot end by itself
        moving: list[bool] = []

        def interrupt_when_moving():
            try:
                wait_for(
                    lambda: any(t.snapshot().acked > 0 for t in session.engine.tasks() if t.name == "int.bin")
                )
                wait_for(lambda: running_in("_wait_briefly"))  # the magic's wait, inside its `try`
                moving.append(True)
            finally:  # the held upload never ends: interrupt the wait whatever happened
                signal.pthread_kill(main, signal.SIGINT)

        # SIGINT raises KeyboardInterrupt here even when the test run started with it ignored
        with sigint_raises_keyboard_interrupt():
            threading.Thread(target=interrupt_when_moving, daemon=True).start()
            task = run(shell, f"%upload {path} {gate.upload_url} --chunk-size 64KiB --wait -o -q")
        assert moving, "no bytes acknowledged before the interrupt"
        err = capsys.readouterr().err
        assert [t for t in session.engine.tasks() if t.name == "int.bin"] == [task]
        assert f"paused {task.id}" in err and f"%upload resume {task.id}" in err
        task.wait(10)
        assert task.state is TaskState.PAUSED
        gate.open()
        run(shell, "%upload resume all")
        task.wait(60)
        assert task.state is TaskState.DONE
        assert sha((tmp_path / "srv" / "int.bin").read_bytes()) == sha(data)
    finally:
        server.stop()


def test_failure_shows_the_server_code_and_message(shell, run, tmp_path, capsys):
    from nbupload.server import start_server

    server = start_server(root=tmp_path / "srv", max_file_size=100 * 1024)
    try:
        path = tmp_path / "big.bin"
        path.write_bytes(os.urandom(300 * 1024))
        task = run(shell, f"%upload {path} {server.upload_url} --chunk-size 64KiB --wait -o")
        assert task.state is TaskState.FAILED and task.error.code == 4002
        captured = capsys.readouterr()
        assert "4002 File exceeded max_file_size" in captured.err
        assert "failed: 4002 File exceeded max_file_size" in captured.out  # the row's text line
        assert not (tmp_path / "srv" / "big.bin").exists()
    finally:
        server.stop()


def test_in_memory_objects(demo, shell, run):
    session, root = demo
    df = pd.DataFrame({"x": np.arange(1000), "y": np.linspace(0, 1, 1000)})
    arr = np.arange(50_000, dtype=np.float32).reshape(100, 500)
    shell.user_ns.update(df=df, arr=arr, blob=bytearray(os.urandom(70_000)), obj={"a": [1, 2, 3]})
    for var, name in (
        ("df", "t.parquet"),
        ("df", "t.csv"),
        ("arr", "a.npy"),
        ("blob", "b.bin"),
        ("obj", "o.json"),
    ):
        task = run(shell, f"%upload --var {var} --as {name} --chunk-size 32KiB --wait -o -q")
        assert task.state is TaskState.DONE, (name, task.error)
    assert pd.read_parquet(root / "t.parquet").equals(df)
    assert pd.read_csv(root / "t.csv").equals(df)
    assert (np.load(root / "a.npy") == arr).all()
    assert (root / "b.bin").read_bytes() == bytes(shell.user_ns["blob"])
    assert json.loads((root / "o.json").read_text()) == {"a": [1, 2, 3]}
    assert session.spools == {}  # spool files of csv/parquet are gone once done
    assert not any((session.spool_dir()).glob("nbupload-var-*"))


def test_wcs_append_with_the_demo_key_pair_and_token(demo, shell, run, data_file, capsys):
    session, root = demo
    path, data = data_file
    task = run(shell, f"%upload {path} -p wcs-append --key dir/p.bin --chunk-size 200KiB --wait -o -q")
    assert task.state is TaskState.DONE, task.error
    assert sha((root / "demo" / "dir" / "p.bin").read_bytes()) == sha(data)

    run(shell, "%upload token --scope demo:tok.bin --var tok")
    out = capsys.readouterr().out
    token = shell.user_ns["tok"]
    assert token.startswith(session.server.access_key + ":")
    assert token not in out and session.server.secret_key not in out and "-> bound to `tok`" in out
    task = run(shell, f"%upload {path} -p wcs-append --token $tok --wait -o -q")
    assert task.state is TaskState.DONE, task.error
    assert (root / "demo" / "tok.bin").read_bytes() == data


def test_token_needs_keys_without_demo_server(shell, run, monkeypatch):
    with pytest.raises(UsageError, match="give --ak"):
        run(shell, "%upload token --scope b")
    monkeypatch.setenv("MY_SK", "key")
    run(shell, "%upload token --scope b:k --ak UMU --sk-env MY_SK --var t2")
    from nbupload.protocols.wcs import verify_token

    policy = verify_token(shell.user_ns["t2"], {"UMU": "key"}, now_ms=int(time.time() * 1000))
    assert policy.scope == "b:k"
    with pytest.raises(UsageError, match="MISSING_VAR is not set"):
        run(shell, "%upload token --ak UMU --sk-env MISSING_VAR")


def test_server_status_and_stop(demo, shell, run, capsys):
    session, _root = demo
    run(shell, "%upload server status")
    out = capsys.readouterr().out
    assert session.server.base_url in out and session.server.secret_key not in out
    run(shell, "%upload server stop")
    assert session.server is None
    run(shell, "%upload server status")
    assert "not running" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("server start   # the embedded server", "server start   "),
        ("f.bin http://h/u#frag --field k=#v", "f.bin http://h/u#frag --field k=#v"),
        (
            "f.bin '# not a comment' \"#nor this\" \\#nor-this # but this",
            "f.bin '# not a comment' \"#nor this\" \\#nor-this ",
        ),
        ("# all comment", ""),
    ],
)
def test_strip_comment_like_a_shell(line, expected):
    from nbupload.ipython.magics import strip_comment

    assert strip_comment(line) == expected


def test_trailing_comment_on_a_magic_line(demo, shell, run, data_file, tmp_path):
    _session, root = demo
    path, data = data_file
    task = run(shell, f"%upload {path} --wait -o   # push the payload")
    assert task.state is TaskState.DONE
    assert sha((root / "payload.bin").read_bytes()) == sha(data)


def test_panel_in_a_terminal_shell_shows_current_states(demo, shell, run, data_file):
    # No event loop here: nothing flushes the UI pump by itself, so the panel must not
    # show the state a row had when %upload displayed it.
    session, _root = demo
    path, data = data_file
    task = run(shell, f"%upload {path} -o")  # displays its row at once (queued/connecting)
    task.wait(20)
    assert task.state is TaskState.DONE
    panel = session.get_panel()
    row = session.rows[task.id]
    assert row._snap.state is TaskState.DONE and row._snap.acked == len(data)
    assert "done" in repr(panel)


def test_help_on_one_form_and_examples_first(shell, capsys):
    from nbupload.ipython.magics import usage_text

    for form, words in (("server", "--throttle"), ("token", "--sk-env"), ("list", "journal")):
        result = shell.run_cell(f"%upload {form}?", store_history=False)
        out = capsys.readouterr().out
        assert result.error_in_exec is None and result.error_before_exec is None
        assert f"%upload {form}" in out and words in out and "not found" not in out, out
    text = usage_text()
    assert text.splitlines()[2] == "Examples:" and "%upload FILE [URL] [options]" in text


def test_server_start_sets_default_url_and_stop_clears_it(shell, run, capsys):
    session = current_session(shell)
    run(shell, "%upload server start")
    assert session.config.default_url == session.server.upload_url
    run(shell, "%upload server stop")
    assert "stopped the demo server" in capsys.readouterr().out
    assert session.config.default_url == ""
