"""Event dispatch and the rate meter (engine/events.py), no network."""

from __future__ import annotations

import time

from nbupload.engine.events import Dispatcher, RateMeter
from nbupload.engine.state import TaskEvent, TaskSnapshot, TaskState


def _snap(task_id: str, state=TaskState.UPLOADING, acked=0) -> TaskSnapshot:
    return TaskSnapshot(
        id=task_id, name="n", protocol="uploader", url="u", state=state, total=100, acked=acked
    )


def test_dispatcher_coalesces_progress_and_never_drops_states():
    d = Dispatcher(interval=0.1)
    got: list[TaskEvent] = []
    d.subscribe(got.append)
    d.post(TaskEvent("state", _snap("a", TaskState.CONNECTING)))
    start = time.monotonic()
    n = 0
    while n < 200 or time.monotonic() - start < 0.5:  # many posts, however slow the machine
        n += 1
        d.post(TaskEvent("progress", _snap("a", acked=n)))
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    d.post(TaskEvent("state", _snap("a", TaskState.DONE, acked=100)))
    d.flush()
    d.stop()
    progress = [e for e in got if e.kind == "progress"]
    states = [e.snapshot.state for e in got if e.kind == "state"]
    assert states == [TaskState.CONNECTING, TaskState.DONE]
    assert 1 <= len(progress) <= 10 * elapsed + 3  # at most one per 0.1 s interval, not one per post
    assert [e.snapshot.acked for e in progress] == sorted(e.snapshot.acked for e in progress)
    assert got[-1].snapshot.state is TaskState.DONE  # no stale progress after the final state


def test_dispatcher_survives_a_broken_subscriber():
    d = Dispatcher(interval=0.01)
    got = []
    d.subscribe(lambda e: 1 / 0)
    unsub = d.subscribe(got.append)
    d.post(TaskEvent("state", _snap("a")))
    d.flush()
    unsub()
    d.post(TaskEvent("state", _snap("a")))
    d.flush()
    d.stop()
    assert len(got) == 1


def test_rate_meter_smooths_and_estimates():
    now = [0.0]
    m = RateMeter(tau=1.0, clock=lambda: now[0])
    m.reset(0)
    for i in range(1, 11):
        now[0] = i * 0.5
        m.update(i * 500)
    assert 900 < m.rate < 1100
    assert 9 < m.eta(10_000) < 11
