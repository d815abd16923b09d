"""The panel controller's rows against out-of-order snapshots (no frontend, no engine)."""

from __future__ import annotations

import dataclasses

from nbupload.engine.state import TaskSnapshot, TaskState
from nbupload.panel.controller import PanelController
from nbupload.panel.pump import ManualScheduler


def _snap(state: TaskState, acked: int, seq: int) -> TaskSnapshot:
    return TaskSnapshot(
        id="t1",
        name="small.bin",
        protocol="uploader",
        url="http://h/u",
        state=state,
        total=10,
        acked=acked,
        seq=seq,
    )


class _Session:
    engine = None

    def resume(self, task_id):  # pragma: no cover - no button is clicked here
        return []

    def start_from_form(self, request):  # pragma: no cover
        return ""

    def default_url(self, protocol):
        return ""


class _Task:
    """A task whose snapshot records whether the controller's lock was held when it was taken."""

    def __init__(self, controller: PanelController, snap: TaskSnapshot) -> None:
        self.id = snap.id
        self.controller = controller
        self.snap = snap
        self.taken_under_lock: list[bool] = []

    def snapshot(self) -> TaskSnapshot:
        self.taken_under_lock.append(self.controller.lock._is_owned())
        return self.snap


def test_a_row_is_made_from_a_snapshot_taken_under_the_lock():
    """``%upload FILE`` makes its row while the pump may apply the task's last update: a snapshot
    taken outside the lock could predate an update the pump dropped (no row yet), and the row of
    a finished upload would say "connecting, 0 B" for good."""
    controller = PanelController(_Session(), ManualScheduler())
    task = _Task(controller, _snap(TaskState.DONE, 10, seq=9))
    row = controller.row_for(task)
    assert task.taken_under_lock == [True]
    assert row.snapshot.state is TaskState.DONE


def test_a_row_never_goes_back_to_an_older_snapshot():
    controller = PanelController(_Session(), ManualScheduler())
    row = controller.row_for(_Task(controller, _snap(TaskState.DONE, 10, seq=9)))
    row.update(_snap(TaskState.CONNECTING, 0, seq=4))
    assert row.snapshot.state is TaskState.DONE and 'data-state="done"' in row.state.value
    row.update(dataclasses.replace(_snap(TaskState.DONE, 10, seq=9), seq=0))  # unordered: taken
    assert row.snapshot.seq == 0
