"""Item 2, second half: does a client's peak RSS grow with the file? 256 MiB vs 4 GiB.

Both files are sparse (no disk used; they read as zeros from the page cache) and go to the
fast sink, one run per client per size, since peak RSS barely varies between runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .clients import Client
from .files import make_sparse, warm
from .servers import Target
from .throughput import MiB, measure_once

__all__ = ["run_rss_growth"]


def run_rss_growth(
    clients: Sequence[Client],
    sink: Target,
    workdir: Path,
    small: int,
    large: int,
    runs: int = 1,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    paths = {}
    for size in (small, large):
        paths[size] = make_sparse(workdir / f"sparse-{size}.bin", size)
        warm(paths[size])
    try:
        for client in clients:
            peaks: dict[int, int | None] = {}
            errors: list[str] = []
            for size in (small, large):
                best: int | None = None
                for r in range(1, runs + 1):
                    s = measure_once(client, sink, paths[size], size, r)
                    if s.error == "n/a":
                        break
                    if not s.ok:
                        errors.append(f"{size / MiB:.0f} MiB: {s.error}")
                        continue
                    best = s.maxrss if best is None else max(best, s.maxrss)
                    log(
                        f"  rss {size / MiB:6.0f} MiB  {client.name:18} {s.maxrss / MiB:6.1f} MiB  {s.rate / MiB:8.1f} MiB/s"
                    )
                peaks[size] = best
            if all(v is None for v in peaks.values()) and not errors:
                continue
            a, b = peaks.get(small), peaks.get(large)
            rows.append(
                {
                    "client": client.name,
                    "label": client.label,
                    "small": small,
                    "large": large,
                    "rss_small": a,
                    "rss_large": b,
                    "growth": (b - a) / a if a and b else None,
                    "errors": errors,
                }
            )
    finally:
        for p in paths.values():
            p.unlink(missing_ok=True)
    return {"rows": rows, "runs": runs}
