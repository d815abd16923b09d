"""Unfinished journal entries are offered on load: a line, a Resume button, auto-resume."""

from __future__ import annotations

import os
import time

import pytest

from nbupload.engine import Engine, EngineConfig
from nbupload.engine.state import TaskState
from nbupload.ipython.extension import UploadSession
from nbupload.server import start_server


@pytest.fixture
def leftover(tmp_path):
    """A journal holding one paused, half-done task of an engine that is gone."""
    server = start_server(root=tmp_path / "srv", throttle=512 * 1024)
    journal = tmp_path / "journal"
    data = os.urandom(512 * 1024)
    src = tmp_path / "left.bin"
    src.write_bytes(data)
    old = Engine(EngineConfig(journal_dir=journal))
    task = old.submit(src, server.upload_url, chunk_size=32 * 1024)
    end = time.monotonic() + 20
    while task.snapshot().acked == 0 and time.monotonic() < end:
        time.sleep(0.02)
    old.shutdown(wait=True)  # pauses, keeps the journal entry
    assert task.state is TaskState.PAUSED and 0 < task.snapshot().acked < len(data)
    yield journal, task.id, server, data
    server.stop()


def open_session(ip, journal, **config):
    engine = Engine(EngineConfig(journal_dir=journal))
    session = UploadSession(ip, engine_factory=lambda: engine)
    for name, value in config.items():
        setattr(session.config, name, value)
    from nbupload.ipython.magics import UploadMagics

    session.open(UploadMagics(ip, session))
    return session, engine


def test_resume_button_in_the_panel(ip, leftover, capsys):
    journal, task_id, server, data = leftover
    session, engine = open_session(ip, journal)
    try:
        out = capsys.readouterr().out
        assert f"1 unfinished upload from a previous session ({task_id})" in out
        panel = session.get_panel()
        line = panel.offers.children[1]
        buttons = [w for w in line.children[0].children if "nbupload-offer-resume" in w._dom_classes]
        text = line.children[1].value
        assert len(buttons) == 1 and f"left.bin [{task_id}]" in text
        assert "KiB" in text and "(" in text and "to 127.0.0.1:" in text and "stopped" in text
        buttons[0].click()
        assert panel.offers.children == ()
        task = engine.get(task_id)
        assert task.wait(30).state is TaskState.DONE
        assert (server.root / "left.bin").read_bytes() == data
        assert task_id in session.rows
    finally:
        session.close()
        engine.shutdown()


def test_auto_resume(ip, leftover, capsys):
    journal, task_id, server, data = leftover
    session, engine = open_session(ip, journal, auto_resume=True)
    try:
        assert "resumed 1 unfinished upload(s) from the journal" in capsys.readouterr().out
        assert engine.get(task_id).wait(30).state is TaskState.DONE
        assert (server.root / "left.bin").read_bytes() == data
    finally:
        session.close()
        engine.shutdown()
