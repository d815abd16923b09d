"""The UI pump: coalescing, rate limit per task, state changes at once, UI-thread only."""

from __future__ import annotations

import asyncio
import threading

from nbupload.engine.state import TaskEvent, TaskSnapshot, TaskState
from nbupload.panel.pump import LoopScheduler, ManualScheduler, UIPump


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def snap(task_id="a", acked=0, state=TaskState.UPLOADING):
    return TaskSnapshot(
        id=task_id, name=task_id, protocol="uploader", url="u", state=state, total=10_000, acked=acked
    )


def make():
    clock = Clock()
    sched = ManualScheduler(clock)
    batches: list[list[TaskSnapshot]] = []
    pump = UIPump(batches.append, sched, interval=0.1, clock=clock)
    return clock, sched, batches, pump


def test_bursts_are_coalesced_to_the_latest_snapshot_per_task():
    _clock, sched, batches, pump = make()
    for i in range(1000):
        pump.push(TaskEvent("progress", snap("a", i)))
        pump.push(snap("b", i))
    assert batches == []  # nothing applied on the pushing thread
    sched.run_due()
    assert len(batches) == 1
    assert sorted((s.id, s.acked) for s in batches[0]) == [("a", 999), ("b", 999)]


def test_at_most_one_update_per_task_per_interval():
    clock, sched, batches, pump = make()
    applied = 0
    for step in range(100):  # 1 second of pushes every 10 ms
        pump.push(snap("a", step))
        sched.run_due()
        clock.t += 0.01
    sched.run_due(force=True)
    applied = sum(len(b) for b in batches)
    assert 9 <= applied <= 12
    assert batches[-1][-1].acked == 99  # the last value always gets through


def test_state_changes_skip_the_rate_limit():
    clock, sched, batches, pump = make()
    pump.push(snap("a", 1))
    sched.run_due()
    clock.t += 0.01
    pump.push(snap("a", 2, TaskState.PAUSED))
    sched.run_due()
    assert [b[0].state for b in batches] == [TaskState.UPLOADING, TaskState.PAUSED]


def test_flush_force_and_close():
    _clock, sched, batches, pump = make()
    pump.push(snap("a", 1))
    sched.run_due()
    pump.push(snap("a", 2))
    assert pump.flush() == 0  # rate-limited
    assert pump.flush(force=True) == 1
    pump.close()
    n = len(batches)
    pump.push(snap("a", 3))
    sched.run_due(force=True)
    assert len(batches) == n and batches[-1][0].acked == 2


def test_worker_threads_push_and_the_loop_thread_applies():
    loop = asyncio.new_event_loop()
    applied_on: set[int] = set()
    seen: dict[str, int] = {}
    done = threading.Event()

    def apply(snaps):
        applied_on.add(threading.get_ident())
        for s in snaps:
            seen[s.id] = s.acked
        if seen == {f"t{i}": 4999 for i in range(4)}:
            done.set()

    pump = UIPump(apply, LoopScheduler(loop), interval=0.05)
    loop_thread = threading.Thread(target=loop.run_forever)
    loop_thread.start()

    def worker(i):
        for n in range(5000):
            pump.push(snap(f"t{i}", n))

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert done.wait(30)
    loop.call_soon_threadsafe(loop.stop)
    loop_thread.join()
    loop.close()
    assert applied_on == {loop_thread.ident}
    assert pump.applied_updates < 4 * 5000 / 10


def test_thread_scheduler_runs_callbacks_on_its_own_thread_in_due_order():
    import threading

    from nbupload.panel.pump import ThreadScheduler

    sched = ThreadScheduler(name="nbupload-ui-test")
    ran: list[tuple[str, str]] = []
    done = threading.Event()
    try:
        sched.call_later(0.2, lambda: (ran.append(("late", threading.current_thread().name)), done.set()))
        sched.call_later(0.0, lambda: ran.append(("soon", threading.current_thread().name)))
        sched.call_later(0.0, lambda: 1 / 0)  # reported, and the thread goes on
        assert done.wait(10)
    finally:
        sched.close()
    assert [r[0] for r in ran] == ["soon", "late"]
    assert {r[1] for r in ran} == {"nbupload-ui-test"}
    assert not sched.thread.is_alive()
    sched.call_later(0.0, lambda: ran.append(("after close", "")))  # ignored
    assert len(ran) == 2


def test_pump_on_a_thread_scheduler_coalesces_to_about_ten_updates_a_second():
    import threading

    from nbupload.panel.pump import ThreadScheduler

    applied: list[int] = []
    seen = threading.Event()

    def apply(snaps):
        applied.append(len(snaps))
        if snaps[0].acked >= 999:
            seen.set()

    import time

    sched = ThreadScheduler()
    pump = UIPump(apply, sched, interval=0.1)
    start = time.monotonic()
    try:
        for i in range(1000):
            pump.push(snap(acked=i))
        assert seen.wait(10)
        elapsed = time.monotonic() - start
    finally:
        pump.close()
        sched.close()
    # one update per 0.1 s at most (plus the first, at once), however fast the pushes came
    assert sum(applied) <= elapsed / 0.1 + 2, (applied, elapsed)


def test_an_older_snapshot_never_replaces_a_newer_one():
    """Two threads may push snapshots of one task out of order (the engine's event thread and a
    click on another): the pump keeps the one taken last (larger ``seq``)."""
    _clock, sched, batches, pump = make()
    newer = TaskSnapshot(
        id="a", name="a", protocol="uploader", url="u", state=TaskState.DONE, total=10, acked=10, seq=7
    )
    older = TaskSnapshot(
        id="a", name="a", protocol="uploader", url="u", state=TaskState.CONNECTING, total=10, seq=3
    )
    pump.push(newer)
    pump.push(older)
    sched.run_due()
    assert [s.state for s in batches[0]] == [TaskState.DONE]
    pump.push(snap("a", 5))  # unordered (seq 0, made elsewhere): always taken
    sched.run_due(force=True)
    assert batches[-1][0].acked == 5
