"""Small helpers shared by the engine and CLI tests."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["CREDENTIALS", "ROOT", "child_env", "make_file", "pause_each_when", "sha256_file", "wait_for"]

#: The repository root.
ROOT = Path(__file__).resolve().parents[2]

#: The WCS key pair the test servers accept.
CREDENTIALS = {"AK-test": "SK-very-secret-value"}

T = TypeVar("T")


def make_file(path: Path, size: int, seed: int = 0) -> Path:
    """A file of ``size`` pseudo-random bytes (written in pieces)."""
    import random

    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n))
            left -= n
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 60.0,
    interval: float = 0.02,
    *,
    what: str | None = None,
    not_yet: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll until ``predicate()`` is truthy (and return that); fail the test with a clear message
    otherwise.

    ``not_yet``: exceptions the predicate may raise while the condition cannot be judged yet
    (a browser element being re-rendered): they count as "not yet", and the last one is named in
    the failure if the time runs out.
    """
    end = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
        except not_yet as exc:
            last, value = exc, None
        if value:
            return value
        if time.monotonic() > end:
            label = what or f"condition {predicate}"
            first_line = (str(last).splitlines() or [""])[0]
            extra = f" (last: {type(last).__name__}: {first_line})" if last else ""
            raise AssertionError(f"{label} not met within {timeout:g} s{extra}")
        time.sleep(interval)


def pause_each_when(tasks: Iterable[Any], ready: Callable[[Any], object], timeout: float = 60.0) -> list[Any]:
    """Pause each task (or batch) the moment ``ready(its snapshot)`` holds, and return their
    snapshots once they have settled.

    Waiting for all of them first and then pausing them all let the first one finish on a
    loaded machine; each is paused as soon as it alone is ready. (Where the remaining time is
    short, put a :class:`~tests.support.gate.ChunkGate` in front as well.)
    """
    tasks = list(tasks)
    waiting = list(tasks)
    end = time.monotonic() + timeout
    while waiting:
        for task in [t for t in waiting if ready(t.snapshot())]:
            task.pause()
            waiting.remove(task)
        if waiting:
            assert time.monotonic() < end, f"not ready within {timeout:g} s: {waiting}"
            time.sleep(0.02)
    return [t.wait(timeout) for t in tasks]


def child_env() -> dict[str, str]:
    """The environment for a child ``python -m nbupload``: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("COLUMNS", None)
    return env
