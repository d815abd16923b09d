"""Unfinished journal entries are offered on load: a line, a Resume button, auto-resume."""

from __future__ import annotations

import os

import pytest

from nbupload.engine import Engine, EngineConfig
from nbupload.engine.state import TaskState
from nbupload.ipython.extension import UploadSession
from nbupload.server import start_server
from tests.support.helpers import pause_each_when, wait_for


@pytest.fixture
def leftover(tmp_path, chunk_gate):
    """A journal holding one paused, half-done task of an engine that is gone."""
    server = start_server(root=tmp_path / "srv", throttle=512 * 1024)
    journal = tmp_path / "journal"
    data = os.urandom(512 * 1024)
    src = tmp_path / "left.bin"
    src.write_bytes(data)
    old = Engine(EngineConfig(journal_dir=journal))
    gate = chunk_gate(server.url, passes=1)  # one chunk, then held: unfinished at the pause
    task = old.submit(src, gate.upload_url, chunk_size=32 * 1024)
    _pause_once_acked([task])
    old.shutdown(wait=True)  # keeps the journal entry
    gate.open()  # the task's URL: its resume goes through
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


def test_offers_say_when_their_server_is_gone_and_can_be_forgotten(ip, tmp_path, capsys, chunk_gate):
    """Two stale entries from another kernel: one whose (embedded) server died, one alive."""
    journal = tmp_path / "journal"
    dead_srv = start_server(root=tmp_path / "dead", throttle=256 * 1024)
    live_srv = start_server(root=tmp_path / "live", throttle=256 * 1024)
    try:
        old = Engine(EngineConfig(journal_dir=journal))
        tasks = []
        # a gate for each: one chunk, then held, so neither finishes before its pause
        dead_gate, live_gate = chunk_gate(dead_srv.url, passes=1), chunk_gate(live_srv.url, passes=1)
        for name, gate in (("dead.bin", dead_gate), ("alive.bin", live_gate)):
            src = tmp_path / name
            src.write_bytes(os.urandom(256 * 1024))
            tasks.append(old.submit(src, gate.upload_url, chunk_size=32 * 1024))
        _pause_once_acked(tasks)
        old.shutdown(wait=True)
        dead_srv.stop()  # the other kernel's demo server ended with it
        dead_gate.close()  # nothing listens at its task's URL any more
        live_gate.open()

        session, engine = open_session(ip, journal)
        try:
            capsys.readouterr()
            by_name = {o.name: o for o in session.offers}
            dead, alive = by_name["dead.bin"], by_name["alive.bin"]
            assert "server is not running" in dead.text and not dead.resumable
            assert alive.resumable and not alive.note and "KiB / 256 KiB" in alive.text
            panel = session.get_panel()
            assert (
                "nbupload-offer-dead"
                in panel.offers.children[1].children[1].value + panel.offers.children[2].children[1].value
            )
            # "Resume all" skips the dead one; "Forget unresumable" removes its journal entry
            session.panel_controller.resume_offer(None)
            assert [o.name for o in session.offers] == ["dead.bin"]
            session.panel_controller.forget_offer(None)
            assert session.offers == [] and panel.offers.children == ()
            assert [u.id for u in engine.unfinished()] == []
            assert engine.get(alive.id).wait(30).state is TaskState.DONE
        finally:
            session.close()
            engine.shutdown()
    finally:
        live_srv.stop()


def test_forget_one_offer(ip, leftover):
    journal, _task_id, _server, _data = leftover
    session, engine = open_session(ip, journal)
    try:
        panel = session.get_panel()
        forget = panel.offers.children[1].children[0].children[1]
        assert "nbupload-offer-forget" in forget._dom_classes
        forget.click()
        assert session.offers == [] and engine.unfinished() == []
    finally:
        session.close()
        engine.shutdown()


def _pause_once_acked(tasks):
    """Pause each task as soon as the server acknowledged some of it: half-done entries, each
    left unfinished however long the others take to start."""
    for snap in pause_each_when(tasks, lambda snap: snap.acked > 0):
        assert snap.state is TaskState.PAUSED and 0 < snap.acked < snap.total, snap


def test_offers_of_this_notebook_by_default_and_all_on_request(ip, tmp_path, capsys, monkeypatch, chunk_gate):
    """The journal notes each task's notebook (JPY_SESSION_NAME): a kernel of a.ipynb offers
    a.ipynb's uploads, the others behind "Show all"; "Resume all" resumes what is shown."""
    journal = tmp_path / "journal"
    srv = start_server(root=tmp_path / "srv", throttle=256 * 1024)
    try:
        old = Engine(EngineConfig(journal_dir=journal))
        tasks = {}
        gates = []
        for name, notebook in (("mine.bin", "work/a.ipynb"), ("theirs.bin", "work/b.ipynb")):
            src = tmp_path / name
            src.write_bytes(os.urandom(256 * 1024))
            gates.append(chunk_gate(srv.url, passes=1))  # one for each: a chunk, then held
            tasks[name] = old.submit(
                src, gates[-1].upload_url, chunk_size=32 * 1024, labels={"notebook": notebook}
            )
        _pause_once_acked(tasks.values())
        old.shutdown(wait=True)
        for gate in gates:
            gate.open()

        monkeypatch.setenv("JPY_SESSION_NAME", "work/a.ipynb")
        session, engine = open_session(ip, journal)
        try:
            out = capsys.readouterr().out
            assert f"1 unfinished upload from a previous session ({tasks['mine.bin'].id})" in out
            assert "1 more from other notebooks or programs" in out
            panel = session.get_panel()
            texts = " ".join(getattr(w, "value", "") for w in _walk(panel.offers))
            assert "mine.bin" in texts and "theirs.bin" not in texts and "paused" in texts
            [show_all] = [w for w in _walk(panel.offers) if "nbupload-offer-show-all" in w._dom_classes]
            assert show_all.description == "Show all (1 more)"
            # "Resume all" with only this notebook's shown leaves the other one alone
            session.panel_controller.resume_offer(None)
            assert engine.get(tasks["mine.bin"].id).wait(60).state is TaskState.DONE
            assert [u.id for u in engine.unfinished()] == [tasks["theirs.bin"].id]
            show_all = next(w for w in _walk(panel.offers) if "nbupload-offer-show-all" in w._dom_classes)
            show_all.click()
            texts = " ".join(getattr(w, "value", "") for w in _walk(panel.offers))
            assert "theirs.bin" in texts
            assert any("nbupload-offer-show-mine" in w._dom_classes for w in _walk(panel.offers))
        finally:
            session.close()
            engine.shutdown()
    finally:
        srv.stop()


_EARLIER_KERNEL = """
import json, sys, time
from nbupload.batch import upload_many
from nbupload.engine import Engine, EngineConfig
journal, url, tmp = sys.argv[1:4]
engine = Engine(EngineConfig(journal_dir=journal))
ids = {}
for folder, notebook in (("mine", "work/a.ipynb"), ("theirs", "work/b.ipynb")):
    b = upload_many([f"{tmp}/{folder}"], url, engine=engine, prefix=folder, chunk_size=32 * 1024,
                    labels={"notebook": notebook})
    ids[folder] = b
# each paused as soon as it has bytes done (waiting for both let the first finish under load)
waiting = dict(ids)
deadline = time.monotonic() + 60
while waiting and time.monotonic() < deadline:
    for k in [k for k, b in waiting.items() if b.snapshot().bytes_done > 0]:
        waiting.pop(k).pause()
    time.sleep(0.02)
states = {k: b.wait(60).state for k, b in ids.items()}
engine.shutdown(wait=True)
print(json.dumps({"ids": {k: b.id for k, b in ids.items()}, "states": states}))
"""


def test_a_batch_is_offered_to_the_notebook_that_started_it(ip, tmp_path, capsys, monkeypatch):
    """A batch's record keeps its notebook (as a task's entry does): b.ipynb's batch waits
    behind "Show all" in a kernel of a.ipynb."""
    import json
    import subprocess
    import sys

    journal = tmp_path / "journal"
    srv = start_server(root=tmp_path / "srv", throttle=128 * 1024)
    try:
        for folder in ("mine", "theirs"):
            (tmp_path / folder).mkdir()
            for i in range(2):
                (tmp_path / folder / f"{folder}{i}.bin").write_bytes(os.urandom(128 * 1024))
        earlier = subprocess.run(
            [sys.executable, "-c", _EARLIER_KERNEL, str(journal), srv.upload_url, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        told = json.loads(earlier.stdout.strip().splitlines()[-1])
        assert told["states"] == {"mine": "paused", "theirs": "paused"}, told
        ids = told["ids"]

        monkeypatch.setenv("JPY_SESSION_NAME", "work/a.ipynb")
        session, engine = open_session(ip, journal)
        try:
            capsys.readouterr()
            mine = {o.id: o.mine for o in session.panel_controller.offers}
            assert mine.get(ids["mine"]) is True and mine.get(ids["theirs"]) is False, mine
            panel = session.get_panel()
            texts = " ".join(getattr(w, "value", "") for w in _walk(panel.offers))
            assert f"batch {ids['mine']}" in texts and ids["theirs"] not in texts
        finally:
            session.close()
            engine.shutdown()
    finally:
        srv.stop()


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()) or ():
        yield from _walk(child)


def test_a_dead_demo_server_comes_back_on_its_root_and_its_uploads_resume(ip, tmp_path, capsys):
    """A kernel uploads to its demo server on --root R and dies with it; the next kernel's
    offer says so, and `%upload server start --root R` takes the old port and resumes it."""
    journal, root = tmp_path / "journal", tmp_path / "root"
    data = os.urandom(512 * 1024)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    first, engine1 = open_session(ip, journal)
    try:
        ip.run_line_magic("upload", f"server start --root {root} --throttle 128KiB")
        old_url = first.server.upload_url
        task = first.submit(str(src), old_url, chunk_size=32 * 1024)
        _pause_once_acked([task])
    finally:
        first.close()  # the kernel ends: its demo server stops, its upload pauses
        engine1.shutdown()
    capsys.readouterr()

    second, engine2 = open_session(ip, journal)
    try:
        [offer] = second.offers
        assert not offer.resumable and f"%upload server start --root {os.path.realpath(root)}" in offer.note
        ip.run_line_magic("upload", f"server start --root {root}")
        out = capsys.readouterr().out
        assert second.server.upload_url == old_url  # the old port, so the task's URL holds
        assert f"resumed 1 upload an earlier demo server on this root left unfinished ({task.id})" in out
        assert engine2.get(task.id).wait(60).state is TaskState.DONE
        assert (root / "big.bin").read_bytes() == data
        assert second.offers == []
    finally:
        second.close()
        engine2.shutdown()


def test_an_upload_to_a_temporary_demo_server_says_it_cannot_resume(ip, tmp_path, capsys):
    journal = tmp_path / "journal"
    src = tmp_path / "t.bin"
    src.write_bytes(os.urandom(256 * 1024))
    first, engine1 = open_session(ip, journal)
    try:
        ip.run_line_magic("upload", "server start --throttle 64KiB")
        task = first.submit(str(src), first.server.upload_url, chunk_size=32 * 1024)
        _pause_once_acked([task])
    finally:
        first.close()
        engine1.shutdown()
    second, engine2 = open_session(ip, journal)
    try:
        [offer] = second.offers
        assert not offer.resumable and "temporary root" in offer.note and offer.forgettable_as_failed
    finally:
        second.close()
        engine2.shutdown()


def test_resume_all_of_stale_offers_does_not_starve_a_new_upload(ip, tmp_path, capsys):
    """Ten stale entries of another kernel, their server gone (it takes connections and never
    answers); "Resume all" in the panel, then a new upload starts at once and finishes."""
    import socket

    journal = tmp_path / "journal"
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    live = start_server(root=tmp_path / "live")
    try:
        dead_url = f"http://127.0.0.1:{hole.getsockname()[1]}/upload"
        old = Engine(EngineConfig(journal_dir=journal))
        for i in range(10):
            src = tmp_path / f"stale{i}.bin"
            src.write_bytes(os.urandom(64 * 1024))
            old.submit(src, dead_url, start=False)
        old.shutdown(wait=True)

        engine = Engine(
            EngineConfig(
                journal_dir=journal, workers=2, connect_timeout=600, read_timeout=600, stall_timeout=600
            )
        )
        session = UploadSession(ip, engine_factory=lambda: engine)
        from nbupload.ipython.magics import UploadMagics

        session.open(UploadMagics(ip, session))
        try:
            panel = session.get_panel()
            [every] = [w for w in _walk(panel.offers) if "nbupload-offer-resume-all" in w._dom_classes]
            every.click()
            stale = [t for t in engine.tasks()]
            assert len(stale) == 10 and session.offers == []
            wait_for(
                lambda: sum(t.state is TaskState.CONNECTING for t in stale) >= 2,
                what="both workers busy with stale entries",
            )
            src = tmp_path / "new.bin"
            data = os.urandom(1 << 20)
            src.write_bytes(data)
            task = session.submit(str(src), live.upload_url)
            assert task.wait(60).state is TaskState.DONE
            assert (live.root / "new.bin").read_bytes() == data
            assert all(t.state in (TaskState.QUEUED, TaskState.CONNECTING) for t in stale)
        finally:
            session.close()
            engine.shutdown()
    finally:
        live.stop()
        hole.close()
