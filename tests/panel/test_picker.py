"""The browser picker's kernel side without a browser: slices, acks, spool files, sidecars,
resuming after a reload or a restart, clear refusals, and spool cleanup by a real engine."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from nbupload.engine import Engine, EngineConfig, TaskState
from nbupload.engine.state import TaskSnapshot
from nbupload.panel.picker import FilePicker, PickerCore, Spool, SpoolStore, spool_key
from nbupload.server import start_server
from tests.support.helpers import wait_for

SLICE = 64 * 1024


class Browser:
    """What picker.js does, in Python: begin, then slices within the window, one per ack."""

    def __init__(self, core: PickerCore) -> None:
        self.core = core
        self.sent = 0  # slice bytes sent
        self.max_inflight = 0
        self.n = 0

    def begin(self, name: str, data: bytes, last_modified: int = 1700000000000) -> tuple[str, dict]:
        self.n += 1
        fid = f"t{self.n}"
        (reply,) = self.core.handle(
            {"kind": "begin", "file": fid, "name": name, "size": len(data), "last_modified": last_modified}
        )
        return fid, reply

    def run(
        self, name: str, data: bytes, *, stop_after: int | None = None, last_modified: int = 1700000000000
    ):
        """Send the file; ``stop_after`` slices: then walk away (a reload). Returns the last reply."""
        fid, reply = self.begin(name, data, last_modified)
        if reply["kind"] != "need":
            return reply
        todo = [
            (s, min(s + reply["slice"], e)) for s, e in reply["ranges"] for s in range(s, e, reply["slice"])
        ]
        inflight: list[tuple[int, int]] = []
        sent = 0
        last = reply
        while todo or inflight:
            while todo and len(inflight) < reply["window"] and (stop_after is None or sent < stop_after):
                inflight.append(todo.pop(0))
                sent += 1
            self.max_inflight = max(self.max_inflight, len(inflight))
            if not inflight:
                return last  # walked away
            s, e = inflight.pop(0)
            self.sent += e - s
            answers = self.core.handle({"kind": "slice", "file": fid, "offset": s}, [memoryview(data[s:e])])
            assert answers[0]["kind"] in ("ack", "stop"), answers
            last = answers[-1]
            if last["kind"] in ("done", "stop"):
                return last
        return last


class Submits:
    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[tuple[Path, str, bytes]] = []
        self.fail = fail

    def __call__(self, path: Path, name: str) -> str:
        if self.fail:
            raise ValueError(self.fail)
        self.calls.append((path, name, Path(path).read_bytes()))
        return f"task{len(self.calls)}"


def core_for(tmp_path: Path, submit=None, **kw) -> PickerCore:
    return PickerCore(SpoolStore(tmp_path / "spool"), submit or Submits(), slice_size=SLICE, **kw)


def test_a_file_arrives_in_bounded_slices_and_is_submitted(tmp_path):
    data = os.urandom(5 * SLICE + 123)
    submits = Submits()
    core = core_for(tmp_path, submits)
    browser = Browser(core)
    reply = browser.run("data.bin", data)
    assert reply["kind"] == "done" and reply["task"] == "task1"
    ((path, name, got),) = submits.calls
    assert name == "data.bin" and got == data
    assert browser.max_inflight == core.window and core.received == len(data) == browser.sent
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["ranges"] == f"0-{len(data)}" and sidecar["task"] == "task1"
    entry = core.entries[spool_key("data.bin", len(data), 1700000000000)]
    assert entry["state"] == "uploading" and entry["spooled"] == len(data) and entry["task"] == "task1"
    # the second leg: the task's progress from the kernel to the server, from the UI pump
    assert (entry["uploaded"], entry["upload_state"]) == (0, "")
    other = TaskSnapshot(
        id="other", name="o", protocol="uploader", url="u", state=TaskState.DONE, total=9, acked=9
    )
    assert not core.note_tasks([other])
    mine = TaskSnapshot(
        id="task1",
        name="data.bin",
        protocol="uploader",
        url="u",
        state=TaskState.UPLOADING,
        total=len(data),
        acked=SLICE,
    )
    assert core.note_tasks([mine]) and not core.note_tasks([mine])
    assert (entry["uploaded"], entry["upload_state"]) == (SLICE, "uploading")


def test_slices_out_of_order_land_at_their_offsets(tmp_path):
    data = os.urandom(3 * SLICE)
    submits = Submits()
    core = core_for(tmp_path, submits)
    fid, need = Browser(core).begin("x.bin", data)
    assert need["ranges"] == [[0, len(data)]] and need["slice"] == SLICE
    for s in (2 * SLICE, 0):
        (ack,) = core.handle({"kind": "slice", "file": fid, "offset": s}, [data[s : s + SLICE]])
        assert ack["kind"] == "ack" and ack["offset"] == s
    replies = core.handle({"kind": "slice", "file": fid, "offset": SLICE}, [data[SLICE : 2 * SLICE]])
    assert [r["kind"] for r in replies] == ["ack", "done"]
    assert submits.calls[0][2] == data


def test_a_reloaded_page_continues_without_resending(tmp_path):
    data = os.urandom(10 * SLICE + 7)
    submits = Submits()
    core = core_for(tmp_path, submits)
    first = Browser(core)
    first.run("big.bin", data, stop_after=4)  # the page reloads with nothing in flight after 4 slices
    assert core.received == 4 * SLICE and not submits.calls
    second = Browser(core)
    _fid, need = second.begin("big.bin", data)
    assert need["ranges"] == [[4 * SLICE, len(data)]] and need["spooled"] == 4 * SLICE
    second.run("big.bin", data)
    assert submits.calls[0][2] == data
    assert core.received == len(data) == first.sent + second.sent  # every byte arrived exactly once


def test_a_restarted_kernel_finds_the_spool_from_its_sidecar(tmp_path):
    data = os.urandom(6 * SLICE)
    Browser(core_for(tmp_path)).run("r.bin", data, stop_after=3)
    submits = Submits()
    core = core_for(tmp_path, submits)  # a new kernel: only the spool directory survived
    key = spool_key("r.bin", len(data), 1700000000000)
    assert core.entries[key]["state"] == "incomplete" and core.entries[key]["spooled"] == 3 * SLICE
    # another file with the same name but another lastModified is another file
    _, need = Browser(core).begin("r.bin", data, last_modified=1)
    assert need["ranges"] == [[0, len(data)]]
    browser = Browser(core)
    assert browser.run("r.bin", data)["kind"] == "done"
    assert browser.sent == 3 * SLICE and submits.calls[0][2] == data


def test_an_empty_file_is_taken(tmp_path):
    submits = Submits()
    core = core_for(tmp_path, submits)
    _, reply = Browser(core).begin("empty.txt", b"")
    assert reply["kind"] == "done" and submits.calls[0][1:] == ("empty.txt", b"")


def test_no_space_is_said_before_anything_is_sent(tmp_path):
    core = PickerCore(SpoolStore(tmp_path / "spool", free_space=lambda p: 1000), Submits())
    _, reply = Browser(core).begin("huge.bin", b"x" * 5000)
    assert reply["kind"] == "stop"
    assert "not enough space on the kernel's disk for huge.bin" in reply["message"]
    assert "4.88 KiB" in reply["message"] and "1000 B free" in reply["message"]
    assert list((tmp_path / "spool").iterdir()) == []


def test_a_full_disk_mid_transfer_stops_with_a_message_and_keeps_what_arrived(tmp_path, monkeypatch):
    data = os.urandom(4 * SLICE)
    core = core_for(tmp_path)
    fid, _ = Browser(core).begin("f.bin", data)
    core.handle({"kind": "slice", "file": fid, "offset": 0}, [data[:SLICE]])

    def full(*_a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    (stop,) = core.handle({"kind": "slice", "file": fid, "offset": SLICE}, [data[SLICE : 2 * SLICE]])
    assert stop["kind"] == "stop" and "no space left on the kernel's disk for f.bin" in stop["message"]
    entry = core.entries[spool_key("f.bin", len(data), 1700000000000)]
    assert entry["state"] == "failed" and "pick the file again to continue" in entry["message"]
    monkeypatch.undo()
    # the transfer is closed; slices still in flight are refused, and a new pick continues
    (late,) = core.handle({"kind": "slice", "file": fid, "offset": 2 * SLICE}, [data[:SLICE]])
    assert late["kind"] == "stop" and "pick the file again" in late["message"]
    _, need = Browser(core).begin("f.bin", data)
    assert need["ranges"] == [[SLICE, len(data)]]


def test_bad_slices_and_browser_failures_get_messages(tmp_path):
    data = os.urandom(2 * SLICE)
    core = core_for(tmp_path)
    fid, _ = Browser(core).begin("b.bin", data)
    (stop,) = core.handle({"kind": "slice", "file": fid, "offset": len(data) - 10}, [data[:SLICE]])
    assert stop["kind"] == "stop" and "outside the file" in stop["message"]
    fid, _ = Browser(core).begin("b.bin", data)
    (stop,) = core.handle({"kind": "slice", "file": fid, "offset": 0}, [])
    assert "without its bytes" in stop["message"]
    fid, _ = Browser(core).begin("b.bin", data)
    (stop,) = core.handle({"kind": "slice", "file": fid, "offset": "soon"}, [data[:SLICE]])
    assert stop["kind"] == "stop" and "the kernel could not take this file (ValueError" in stop["message"]
    fid, _ = Browser(core).begin("b.bin", data)
    assert core.handle({"kind": "fail", "file": fid, "message": "could not read b.bin in the browser"}) == []
    entry = core.entries[spool_key("b.bin", len(data), 1700000000000)]
    assert entry["state"] == "failed" and entry["message"] == "could not read b.bin in the browser"
    (stop,) = core.handle({"kind": "begin", "file": "z", "name": "", "size": 3})
    assert stop["kind"] == "stop" and "cannot be taken" in stop["message"]
    (stop,) = core.handle({"kind": "begin", "file": "z", "name": "n.bin"})
    assert "did not say how big" in stop["message"]


def test_a_failed_submit_is_said_and_a_new_pick_retries_without_resending(tmp_path):
    data = os.urandom(2 * SLICE)
    core = core_for(tmp_path, Submits(fail="give an upload URL"))
    reply = Browser(core).run("u.bin", data)
    assert reply["kind"] == "stop" and "its upload did not start: give an upload URL" in reply["message"]
    core.submit = submits = Submits()
    browser = Browser(core)
    assert browser.run("u.bin", data)["kind"] == "done"
    assert browser.sent == 0 and submits.calls[0][2] == data


def test_cancel_removes_the_partial_spool(tmp_path):
    data = os.urandom(4 * SLICE)
    core = core_for(tmp_path)
    fid, _ = Browser(core).begin("c.bin", data)
    core.handle({"kind": "slice", "file": fid, "offset": 0}, [data[:SLICE]])
    key = spool_key("c.bin", len(data), 1700000000000)
    (stop,) = core.handle({"kind": "cancel", "key": key})
    assert stop == {"kind": "stop", "file": fid, "key": key, "message": "cancelled"}
    assert core.entries[key]["state"] == "cancelled"
    assert list((tmp_path / "spool").iterdir()) == []


def test_sweep_removes_finished_forgotten_and_old_partial_spools(tmp_path):
    store = SpoolStore(tmp_path / "spool")
    live, gone, old, _fresh = (store.open(n, 10, 0) for n in ("live", "gone", "old", "fresh"))
    live.task_id, gone.task_id = "t-live", "t-gone"
    live.save(), gone.save()
    old.save()
    sidecar = json.loads(old.meta_path.read_text())
    sidecar["updated"] = time.time() - 8 * 24 * 3600
    old.meta_path.write_text(json.dumps(sidecar))
    removed = store.sweep(lambda task_id: task_id == "t-live")
    assert sorted(removed) == sorted([gone.key, old.key])
    assert sorted(s.name for s in store.spools()) == ["fresh", "live"]
    assert Spool.load(tmp_path / "spool" / "nonsense.json") is None
    # a late "done" of an earlier upload of the same file never removes the file picked again
    again = store.open("gone", 10, 0)
    assert not store.remove(gone, task_id="t-gone") and again.data_path.exists()
    assert store.remove(live, task_id="t-live") and not live.data_path.exists()


@pytest.fixture
def server(tmp_path):
    handle = start_server(root=tmp_path / "srv")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def engine(tmp_path):
    eng = Engine(EngineConfig(journal_dir=tmp_path / "journal"))
    try:
        yield eng
    finally:
        eng.shutdown()


def test_the_engine_uploads_the_spool_and_it_is_removed_when_done(tmp_path, server, engine):
    data = os.urandom(5 * SLICE + 1)

    def submit(path: Path, name: str) -> str:
        return engine.submit(str(path), server.upload_url, filename=name, chunk_size=2 * SLICE).id

    core = core_for(tmp_path, submit, engine=lambda: engine)
    reply = Browser(core).run("up.bin", data)
    task = engine.get(reply["task"])
    task.wait(30)
    assert task.state is TaskState.DONE
    assert (
        hashlib.sha256((tmp_path / "srv" / "up.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    )
    wait_for(lambda: list((tmp_path / "spool").iterdir()) == [], what="the spool emptied")
    # the same file picked again after its upload is done is a new upload
    again = Browser(core)
    last = again.run("up.bin", data)
    assert last["kind"] == "done" and again.sent == len(data), last


def test_a_cancelled_upload_removes_its_spool_and_a_paused_one_resumes_on_a_new_pick(
    tmp_path, engine, chunk_gate
):
    data = os.urandom(3 * SLICE)
    handle = start_server(root=tmp_path / "slow", throttle=64 * 1024)
    gate = chunk_gate(handle.url, passes=0)  # every chunk held: the upload is unfinished when paused
    try:

        def submit(path: Path, name: str) -> str:
            return engine.submit(str(path), gate.upload_url, filename=name, chunk_size=SLICE).id

        core = core_for(tmp_path, submit, engine=lambda: engine)
        task = engine.get(Browser(core).run("p.bin", data)["task"])
        task.pause()
        task.wait(30)
        assert task.state is TaskState.PAUSED
        browser = Browser(core)
        reply = browser.run("p.bin", data)
        assert reply == {
            "kind": "done",
            "file": reply["file"],
            "key": reply["key"],
            "task": task.id,
            "spooled": len(data),
        }
        assert browser.sent == 0 and task.state is not TaskState.PAUSED
        assert "resumed task" in core.entries[reply["key"]]["message"]
        task.cancel()
        wait_for(lambda: list((tmp_path / "spool").iterdir()) == [], what="the spool emptied")
    finally:
        handle.stop()


def test_widget_messages_go_through_the_core(tmp_path, monkeypatch):
    data = os.urandom(2 * SLICE)
    submits = Submits()
    picker = FilePicker(submits, store=SpoolStore(tmp_path / "spool"))
    picker.core.slice_size = SLICE
    sent: list[dict] = []
    monkeypatch.setattr(picker, "send", lambda content, buffers=None: sent.append(content))
    picker._handle_custom_msg(
        {"kind": "begin", "file": "f", "name": "w.bin", "size": len(data), "last_modified": 5}, []
    )
    assert sent[-1]["kind"] == "need"
    for s in (0, SLICE):
        picker._handle_custom_msg(
            {"kind": "slice", "file": "f", "offset": s}, [memoryview(data[s : s + SLICE])]
        )
    assert [m["kind"] for m in sent] == ["need", "ack", "ack", "done"]
    assert picker.received == len(data) and picker.entries[0]["state"] == "uploading"
    assert submits.calls[0][2] == data
    assert "anywidget" in picker._model_module and "render" in picker._esm
    picker.close()


def test_an_empty_file_reaches_the_server_and_its_spool_goes(tmp_path, server, engine):
    def submit(path: Path, name: str) -> str:
        return engine.submit(str(path), server.upload_url, filename=name).id

    core = core_for(tmp_path, submit, engine=lambda: engine)
    _, reply = Browser(core).begin("empty.txt", b"")
    assert reply["kind"] == "done"
    engine.get(reply["task"]).wait(30)
    assert (tmp_path / "srv" / "empty.txt").read_bytes() == b""
    wait_for(lambda: list((tmp_path / "spool").iterdir()) == [], what="the spool emptied")
