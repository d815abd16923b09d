"""Two lanes: tasks resumed from the journal never starve uploads started in this process.

Against the real reference server; the stale tasks' server is "gone" the worst way for
starvation: its address still accepts connections (the kernel's backlog) but nothing ever
answers, so each of their runs holds a worker until its (here: ten-minute) timeout.
"""

from __future__ import annotations

import socket

import pytest

from nbupload.engine import TaskState
from nbupload.engine.lanes import Lanes
from tests.support.helpers import make_file, sha256_file, wait_for

STALE = 10


@pytest.fixture
def black_hole():
    """A loopback address whose server is gone: connections are taken, never answered."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/upload"
    finally:
        sock.close()


def test_resume_all_of_stale_tasks_does_not_delay_a_new_upload(make_engine, server, tmp_path, black_hole):
    first = make_engine(workers=2)
    stale_ids = []
    for i in range(STALE):
        src = make_file(tmp_path / f"stale{i}.bin", 200_000, seed=i)
        stale_ids.append(first.submit(str(src), black_hole, start=False).id)
    first.shutdown()

    # a new kernel: "Resume all" adopts the ten journal entries
    second = make_engine(workers=2, stall_timeout=600.0, read_timeout=600.0, connect_timeout=600.0)
    resumed = second.resume()
    assert sorted(t.id for t in resumed) == sorted(stale_ids)

    def connecting():
        return [t for t in resumed if t.state is TaskState.CONNECTING]

    # the old tasks fill every worker slot (each run now waits ten minutes for an answer)
    wait_for(lambda: len(connecting()) == 2, timeout=60)

    src = make_file(tmp_path / "new.bin", 3 << 20, seed=99)
    new = second.submit(str(src), server.upload_url)
    snap = new.wait(60, raise_on_error=True)
    assert snap.state is TaskState.DONE
    assert sha256_file(server.root / "new.bin") == sha256_file(src)
    # the new upload went past them: they are all still waiting, two of them in a run
    assert all(t.state in (TaskState.QUEUED, TaskState.CONNECTING) for t in resumed)
    assert len(connecting()) == 2


def test_the_journal_says_why_a_task_stopped_and_keeps_its_labels(make_engine, tmp_path):
    gone = socket.socket()
    gone.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{gone.getsockname()[1]}/upload"
    gone.close()  # nothing listens there: every connection is refused
    src = make_file(tmp_path / "a.bin", 100_000)
    first = make_engine(retries=1000, retry_deadline=600.0)
    task = first.submit(str(src), url, labels={"notebook": "work/a.ipynb"})
    wait_for(lambda: task.error is not None, timeout=60)
    first.shutdown()

    [entry] = make_engine().unfinished()
    assert entry.id == task.id and entry.state == "paused"
    assert entry.error and "connect" in entry.error.lower()
    assert entry.labels == {"notebook": "work/a.ipynb"}
    assert entry.as_dict()["labels"] == {"notebook": "work/a.ipynb"}


def test_background_runs_use_only_slots_no_new_upload_needs():
    lanes: Lanes[str] = Lanes(2)
    for name in ("old1", "old2", "old3"):
        lanes.put(name, background=True)
    assert lanes.take() == ("old1", True)
    assert lanes.take() == ("old2", True)
    lanes.put("new1")
    lanes.put("new2")
    lanes.put("new3")
    # both slots hold old runs, yet new ones start: up to `limit` of them
    assert lanes.take() == ("new1", False)
    assert lanes.take() == ("new2", False)
    assert lanes.running() == (2, 2)
    lanes.done(False)
    assert lanes.take() == ("new3", False)  # a new one before the waiting old one
    for background in (False, False, True):
        lanes.done(background)
    assert lanes.running() == (0, 1)
    assert lanes.take() == ("old3", True)  # below the limit again: old runs go on
    lanes.retire(1)
    assert lanes.take() is None
    lanes.close()
    assert lanes.take() is None


def test_every_run_is_taken_by_threads_woken_one_at_a_time():
    """put() and done() wake one idle thread each; with more threads than slots, retiring
    threads and runs in both lanes, no startable run is left with every thread asleep."""
    import threading

    lanes: Lanes[int] = Lanes(3)
    total = 3000
    taken: list[int] = []
    lock = threading.Lock()
    all_taken = threading.Event()

    def work() -> None:
        while (got := lanes.take()) is not None:
            with lock:
                taken.append(got[0])
                if len(taken) == total:
                    all_taken.set()
            lanes.done(got[1])

    threads = [threading.Thread(target=work, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    for i in range(total):
        lanes.put(i, background=i % 3 == 0)
        if i == total // 2:
            lanes.retire(2)  # two threads leave half-way; the others go on
    assert all_taken.wait(60), f"{len(taken)} of {total} runs taken"
    assert sorted(taken) == list(range(total))
    lanes.close()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
