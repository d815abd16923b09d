"""Small helpers shared by the engine and CLI tests."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["CREDENTIALS", "ROOT", "child_env", "make_file", "sha256_file", "wait_for"]

#: The repository root.
ROOT = Path(__file__).resolve().parents[2]

#: The WCS key pair the test servers accept.
CREDENTIALS = {"AK-test": "SK-very-secret-value"}


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


def wait_for(predicate: Callable[[], object], timeout: float = 60.0, interval: float = 0.02) -> object:
    """Poll until ``predicate()`` is truthy; fail the test with a clear message otherwise."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def child_env() -> dict[str, str]:
    """The environment for a child ``python -m nbupload``: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("COLUMNS", None)
    return env
