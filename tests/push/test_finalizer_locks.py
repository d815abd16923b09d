"""What weakref finalizers run must take no lock.

A finalizer runs in whatever thread the garbage collector interrupts. A run of the suite
deadlocked: a batch thread held the engine's lock (and the batch registry's) while starting
an engine worker, ``Thread.start`` waits for the new thread to say it runs, and the new thread
was interrupted by the collector, inside ``Event.set``, to run a collected batch's finalizers:
``Engine.on_shutdown``'s ``remove`` (the engine's lock) and the registry's ``_drop_owner``
(``_SUBMITTING``). Both now only note what to do; these tests call them while another thread
holds those locks.
"""

from __future__ import annotations

import threading

from nbupload.batch import registry
from nbupload.engine import Engine


def _holding(lock, action) -> bool:
    """Run ``action`` in a thread while this one holds ``lock``: whether it finished."""
    done = threading.Event()

    def run() -> None:
        action()
        done.set()

    with lock:
        t = threading.Thread(target=run, daemon=True)
        t.start()
        finished = done.wait(10)  # a lock-free call takes microseconds; a blocked one never ends
    t.join(10)
    return finished


def test_removing_a_shutdown_hook_takes_no_lock(tmp_path):
    engine = Engine(journal=False)
    try:
        calls: list[str] = []
        remove = engine.on_shutdown(lambda: calls.append("stop"))
        kept = engine.on_shutdown(lambda: calls.append("kept"))
        assert _holding(engine._lock, remove)
        engine.shutdown()
        assert calls == ["kept"]  # the removed hook is skipped
        kept()
    finally:
        engine.shutdown()


def test_a_gone_batch_is_forgotten_without_the_registry_lock():
    registry._OWNER["task-of-gone"] = "gone-batch"
    assert _holding(registry._SUBMITTING, lambda: registry._drop_owner("gone-batch"))
    assert registry.owner_of("task-of-gone") is None  # forgotten at the next lookup
