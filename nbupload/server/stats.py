"""Counters per protocol, for tests, benchmarks and ``GET /_nbupload/stats``."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["PROTOCOLS", "Stats"]

PROTOCOLS = ("uploader", "wcs")
_FIELDS = ("requests", "bytes", "duplicate_bytes", "completed", "errors")


class Stats:
    """``requests``: requests handled; ``bytes``: file bytes received; ``duplicate_bytes``:
    file bytes of chunks the server already held; ``completed``: files or appends finished;
    ``errors``: requests answered with an error."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {p: dict.fromkeys(_FIELDS, 0) for p in PROTOCOLS}

    def add(self, protocol: str, field: str, n: int = 1) -> None:
        # The event loop is the only writer; the lock makes snapshots from other threads exact.
        with self._lock:
            self._counts[protocol][field] += n

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {p: dict(c) for p, c in self._counts.items()}
        out["total"] = {f: sum(out[p][f] for p in PROTOCOLS) for f in _FIELDS}
        return out

    def reset(self) -> None:
        with self._lock:
            for counts in self._counts.values():
                for f in counts:
                    counts[f] = 0
