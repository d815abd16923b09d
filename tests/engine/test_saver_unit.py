"""The journal's progress saver (engine/saver.py): coalescing, flush, discard, stop."""

from __future__ import annotations

import threading

from nbupload.engine.saver import ProgressSaver
from tests.support.helpers import wait_for


def test_saves_handed_in_while_one_is_written_coalesce_into_one():
    started, release = threading.Event(), threading.Event()
    saved: list[tuple[str, str]] = []

    def save(item: str) -> None:
        saved.append((item, threading.current_thread().name))
        if len(saved) == 1:
            started.set()
            release.wait(60)

    saver: ProgressSaver[str] = ProgressSaver(save, name="test-saver")
    saver.later("a")
    assert started.wait(60)
    for _ in range(5):  # while "a" is being written: five more acknowledgements of "a", one of "b"
        saver.later("a")
    saver.later("b")
    release.set()
    assert saver.flush(60)
    assert [item for item, _ in saved] == ["a", "a", "b"]  # the latest of each, once
    assert {thread for _, thread in saved} == {"test-saver"}  # never the caller's thread
    saver.stop(60)


def test_discard_drops_a_pending_save_and_stop_writes_the_rest():
    gate = threading.Event()
    saved: list[str] = []

    def save(item: str) -> None:
        gate.wait(60)
        saved.append(item)

    saver: ProgressSaver[str] = ProgressSaver(save)
    saver.later("busy")  # holds the thread until the gate opens
    wait_for(lambda: not saver._pending, timeout=60, what="the first save to start")
    saver.later("ended")
    saver.later("kept")
    saver.discard("ended")  # the task ended (its entry removed): its pending save must not run
    assert not saver.flush(0.05)  # still writing "busy": flush says it did not finish
    gate.set()
    saver.stop(60)
    assert saved == ["busy", "kept"]
    saver.later("after")  # stopped: written at once, on the caller's thread
    assert saved == ["busy", "kept", "after"]
