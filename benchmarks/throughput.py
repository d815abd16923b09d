"""Items 1-3: single-stream throughput, peak RSS and CPU per GiB, clients side by side.

For each file size and each server, every client first runs once as a warm-up (after the
file has been read into the page cache), then ``runs`` rounds follow; in each round every
client runs once, in an order rotated from round to round so that no client always runs
right after the same neighbour. A run counts only if the client exited 0 and the server
received exactly the file's size.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .clients import REFERENCE_CLIENT, Client
from .files import warm
from .proc import run_child
from .servers import Target, child_env
from .stats import Summary, ratio, summarize

__all__ = ["Sample", "measure_once", "run_matrix", "summarize_samples"]

GiB = float(1 << 30)
MiB = float(1 << 20)


@dataclass
class Sample:
    client: str
    target: str
    size: int
    run: int  # 0 = warm-up
    ok: bool
    error: str
    seconds: float  # the transfer (client-reported when it can, else process wall time)
    wall: float  # process spawn to exit
    cpu: float  # user+sys seconds of the transfer (client-reported for Python peers)
    cpu_process: float  # user+sys of the whole process, from wait4
    maxrss: int  # bytes, from wait4
    received: int | None  # file bytes the server got

    @property
    def rate(self) -> float:
        return self.size / self.seconds if self.ok and self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate": self.rate}


def measure_once(
    client: Client, target: Target, path: Path, size: int, run: int, timeout: float = 900.0
) -> Sample:
    argv = client.command(str(path), target)
    if argv is None:
        return Sample(client.name, target.name, size, run, False, "n/a", 0.0, 0.0, 0.0, 0.0, 0, None)
    target.reset()
    child = run_child(argv, env=child_env(), timeout=timeout)
    received = None
    error = "" if child.ok else child.describe_failure()
    try:
        received = target.received_file_bytes(size)
    except Exception as exc:  # a dead server: report it beside the client's own failure
        error = error or f"server: {exc}"
    if not error and received != size:
        error = f"server received {received} bytes of {size}"
    http_code = child.report.get("http_code")
    if not error and http_code is not None and not 200 <= int(http_code) < 300:
        error = f"HTTP {http_code}"
    sample = Sample(
        client.name, target.name, size, run, not error, error,
        child.transfer_seconds(), child.wall, child.transfer_cpu(), child.cpu, child.maxrss, received,
    )  # fmt: skip
    if not target.is_sink:
        target.clear_root()
    return sample


def run_matrix(
    clients: Sequence[Client],
    targets: Sequence[Target],
    files: Sequence[tuple[int, Path]],
    runs: int,
    *,
    warmup: bool = True,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> list[Sample]:
    """Every client against every target for every file, ``runs`` measured rounds each."""
    samples: list[Sample] = []
    for size, path in files:
        warm(path)
        for target in targets:
            rounds = ([0] if warmup else []) + list(range(1, runs + 1))
            for r in rounds:
                shift = r % len(clients) if clients else 0
                order = list(clients[shift:]) + list(clients[:shift])
                for client in order:
                    s = measure_once(client, target, path, size, r)
                    samples.append(s)
                    tag = "warm-up" if r == 0 else f"run {r}/{runs}"
                    if s.error == "n/a":
                        continue
                    what = (
                        f"{s.rate / MiB:8.1f} MiB/s  rss {s.maxrss / MiB:6.1f} MiB"
                        if s.ok
                        else f"FAILED {s.error}"
                    )
                    log(f"  {target.name:9} {size / MiB:6.0f} MiB {tag:9} {client.name:18} {what}")
    return samples


def _measured(samples: Sequence[Sample], **match: Any) -> list[Sample]:
    return [s for s in samples if s.run > 0 and all(getattr(s, k) == v for k, v in match.items())]


def summarize_samples(samples: Sequence[Sample], clients: Sequence[Client]) -> list[dict[str, Any]]:
    """One row per (size, target, client): rate, ratio to curl -F, RSS, CPU s/GiB."""
    rows: list[dict[str, Any]] = []
    keys = sorted({(s.size, s.target) for s in samples}, key=lambda k: (k[0], k[1] != "sink", k[1]))
    for size, target in keys:
        ref_rate = summarize(
            s.rate for s in _measured(samples, size=size, target=target, client=REFERENCE_CLIENT) if s.ok
        )
        for client in clients:
            got = _measured(samples, size=size, target=target, client=client.name)
            if not got or all(s.error == "n/a" for s in got):
                continue
            ok = [s for s in got if s.ok]
            rate = summarize(s.rate for s in ok)
            rows.append(
                {
                    "size": size,
                    "target": target,
                    "client": client.name,
                    "label": client.label,
                    "runs": len(got),
                    "failures": [s.error for s in got if not s.ok],
                    "rate": _d(rate),
                    "ratio": ratio(rate, ref_rate),
                    "ratio_min": (rate.min / ref_rate.median)
                    if rate and ref_rate and ref_rate.median
                    else None,
                    "ratio_max": (rate.max / ref_rate.median)
                    if rate and ref_rate and ref_rate.median
                    else None,
                    "maxrss": _d(summarize(s.maxrss for s in ok)),
                    "cpu_per_gib": _d(summarize(s.cpu / (size / GiB) for s in ok)),
                    "cpu_process_per_gib": _d(summarize(s.cpu_process / (size / GiB) for s in ok)),
                    "wall": _d(summarize(s.wall for s in ok)),
                }
            )
    return rows


def _d(summary: Summary | None) -> dict[str, float] | None:
    return summary.as_dict() if summary else None
