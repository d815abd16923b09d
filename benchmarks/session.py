"""A multi-file session to the fast sink: its fields sent with ``sendfile``, or read.

Until the driver handed a session's fields their own files, every byte of a multi-file
session was read into Python (``pread``) and written with ``sendall``; a single file went out
with ``sendfile``. This runs one session of ``--files`` files of ``--size`` each to the sink
(:mod:`benchmarks.sink`, a separate process, so the CPU figure is the client's) in two ways,
interleaved round by round (the order rotated each round):

- ``files``: the fields given as paths, as users give them (``sendfile`` since this change);
- ``read``: the same files behind an object with only ``size`` and ``pread`` (no descriptor),
  which takes the read path, as every session field did before.

Each run counts only when the sink received every file byte. Printed per run and as medians:
seconds, MiB/s and the client process's CPU seconds (``time.process_time``, all threads).
Figures, not assertions.

Run: ``python -m benchmarks.session --files 4 --size 64MiB --rounds 3`` (``--modes files``
alone, with ``PYTHONPATH`` pointing at an older checkout, measures that version's path).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nbupload.engine import Engine, EngineConfig
from nbupload.units import format_size, parse_size

from .files import make_dense, warm
from .servers import Target, start_sink

__all__ = ["main"]

MiB = float(1 << 20)


class _ReadOnly:
    """A file behind ``size`` and ``pread`` only: no descriptor, so it takes the read path."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size
        self.filename = path.name

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def close(self) -> None:
        os.close(self._fd)


def _files(directory: Path, count: int, size: int) -> list[Path]:
    """``count`` files of ``size`` random bytes (kept when already there), read once so every
    run finds them in the page cache."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        path = directory / f"field{i}.bin"
        if not path.exists() or path.stat().st_size != size:
            make_dense(path, size)
        warm(path)
        out.append(path)
    return out


def _run_once(engine: Engine, sink: Target, paths: list[Path], mode: str) -> tuple[float, float, int]:
    """One session: (seconds, client CPU seconds, file bytes the sink received)."""
    sink.reset()
    readers = [_ReadOnly(p) for p in paths] if mode == "read" else []
    fields: dict[str, Any] = {f"f{i}": (readers[i] if readers else str(p)) for i, p in enumerate(paths)}
    cpu0, t0 = time.process_time(), time.monotonic()
    try:
        engine.submit(fields, sink.upload_url).wait(900, raise_on_error=True)
    finally:
        seconds, cpu = time.monotonic() - t0, time.process_time() - cpu0
        for r in readers:
            r.close()
    return seconds, cpu, int(sink.stats().get("file_bytes", -1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.session", description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--size", type=parse_size, default=parse_size("64MiB"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="files,read", help="comma-separated: files, read")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "nbupload-bench-session")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    paths = _files(args.dir, args.files, args.size)
    total = args.files * args.size
    sink = start_sink()
    results: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    print(f"session of {args.files} x {format_size(args.size)} to the sink at {sink.server.url}")
    try:
        with Engine(EngineConfig(journal=False)) as engine:
            _run_once(engine, sink, paths, modes[0])  # warm-up: connections, imports
            for rnd in range(args.rounds):
                order = modes[rnd % len(modes) :] + modes[: rnd % len(modes)]
                for mode in order:
                    seconds, cpu, got = _run_once(engine, sink, paths, mode)
                    ok = got == total
                    if ok:
                        results[mode].append((seconds, cpu))
                    print(
                        f"round {rnd + 1} {mode:5}  {seconds:6.3f} s  {total / MiB / seconds:7.0f} MiB/s  "
                        f"cpu {cpu:6.3f} s{'' if ok else f'  FAILED: sink got {got} of {total} bytes'}",
                        flush=True,
                    )
    finally:
        sink.stop()
    print("median:")
    for mode, runs in results.items():
        if runs:
            s = statistics.median(r[0] for r in runs)
            c = statistics.median(r[1] for r in runs)
            print(f"  {mode:5}  {s:6.3f} s  {total / MiB / s:7.0f} MiB/s  cpu {c:6.3f} s  ({len(runs)} runs)")
    return 0 if all(len(r) == args.rounds for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
