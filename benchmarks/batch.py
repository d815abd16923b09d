"""Issue 13 §1: a batch of many small files (10,000 x 1 KiB): files/s and kernel RSS growth.

Each trial runs in a fresh Python process (``python -m benchmarks.batch --child``) that plays
the kernel: it makes an engine with its own journal, calls ``nbupload.upload_many(folder,
url)`` against the reference server and waits; it prints files/s and how much its resident
set grew (``VmRSS`` after minus before, and the peak ``VmHWM`` minus the RSS before). A fresh
server root per trial, so nothing is skipped as unchanged. The median of the trials is the
figure; the targets (:mod:`benchmarks.targets`) are >= 200 files/s and < 50 MiB growth.

Standalone: ``python -m benchmarks.batch [--files 10000] [--size 1024] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .servers import REPO_ROOT, Target, child_env, start_reference

__all__ = ["make_tree", "run_batch_child", "run_section", "run_trials"]

MiB = 1 << 20


def make_tree(folder: Path, files: int, size: int) -> Path:
    """``files`` files of ``size`` bytes under ``folder``, 100 per sub-folder (as results are)."""
    if (folder / ".complete").is_file():
        return folder
    for i in range(files):
        sub = folder / f"run{i // 100:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"metrics-{i:05d}.csv").write_bytes(bytes([48 + i % 10]) * size)
    (folder / ".complete").write_text("")
    return folder


def _rss(field: str = "VmRSS") -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _child(folder: str, url: str, home: str) -> dict[str, Any]:
    """One trial, in this process: the figures as a dict (printed as JSON by ``--child``)."""
    import nbupload
    from nbupload.engine import Engine, EngineConfig

    engine = Engine(EngineConfig(journal_dir=Path(home) / "tasks"))
    engine.flush_events(0.1)
    before = _rss()
    started = time.monotonic()
    batch = nbupload.upload_many(folder, url, engine=engine)
    snap = batch.wait(timeout=1800)
    took = time.monotonic() - started
    after = _rss()
    peak = _rss("VmHWM")
    batch.close()
    engine.shutdown(wait=True, timeout=10)
    return {
        "files": snap.files_total,
        "done": snap.files_done,
        "failed": snap.files_failed,
        "state": snap.state,
        "seconds": took,
        "files_per_s": snap.files_done / took if took else 0.0,
        "rss_growth": after - before,
        "peak_growth": peak - before,
    }


def run_batch_child(
    folder: Path, url: str, home: Path, *, cwd: Path, env: dict[str, str], label: str, tag: str | None = None
) -> dict[str, Any]:
    """One trial in a fresh process (``python -m benchmarks.batch --child``, run in ``cwd``,
    so from that tree's code): the figures of :func:`_child`, read from the JSON line it prints
    last. A failed trial raises, naming ``label``, with the end of the child's stderr."""
    argv = [sys.executable, "-m", "benchmarks.batch", "--child", str(folder), url, str(home)]
    if tag is not None:
        argv.append(f"--tag={tag}")
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{label} failed: {proc.stderr[-2000:]}")
    res: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return res


def run_trials(
    target: Target, folder: Path, workdir: Path, runs: int, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    out = []
    for r in range(1, runs + 1):
        home = Path(tempfile.mkdtemp(prefix="batch-home-", dir=workdir))
        # a fresh folder on the server each trial: nothing there to skip
        res = run_batch_child(
            folder,
            target.upload_url,
            home,
            cwd=REPO_ROOT,
            env=child_env(NBUPLOAD_HOME=str(home)),
            label=f"batch trial {r}",
            tag=f"t{r}",
        )
        log(
            f"  batch run {r}: {res['done']}/{res['files']} files in {res['seconds']:.1f} s = "
            f"{res['files_per_s']:.0f} files/s, RSS growth {res['rss_growth'] / MiB:.1f} MiB "
            f"(peak {res['peak_growth'] / MiB:.1f} MiB) [{res['state']}]"
        )
        out.append(res)
        target.clear_root()  # drop what this trial stored, so the next one sends it all again
    return out


def _summary(files: int, size: int, trials: list[dict[str, Any]]) -> dict[str, Any]:
    rate = statistics.median(t["files_per_s"] for t in trials)
    growth = statistics.median(t["rss_growth"] for t in trials)
    peak = statistics.median(t["peak_growth"] for t in trials)
    md = [
        f"{files} files of {size} bytes (one folder, 100 per sub-folder) to the reference server, "
        f"`nbupload.upload_many(folder, url)` in a fresh process per trial; median of {len(trials)}.",
        "",
        "| files/s (median) | RSS growth (median) | peak RSS growth (median) | runs |",
        "|--:|--:|--:|---|",
        f"| {rate:.0f} | {growth / MiB:.1f} MiB | {peak / MiB:.1f} MiB | "
        + ", ".join(f"{t['files_per_s']:.0f}" for t in trials)
        + " |",
    ]
    return {
        "files": files,
        "size": size,
        "files_per_s": rate,
        "rss_growth": growth,
        "peak_growth": peak,
        "trials": trials,
        "markdown": md,
    }


def run_section(*, targets: list[Target], workdir: Path, quick: bool, runs: int, preset: dict[str, Any],
                log: Callable[[str], None], **_: Any) -> dict[str, Any]:  # fmt: skip
    files = 300 if quick else 10_000
    size = 1024
    ref = next((t for t in targets if t.name == "reference"), None)
    own = ref is None
    if ref is None:
        ref = start_reference(workdir / "batch-root")
    try:
        folder = make_tree(workdir / f"batch-{files}", files, size)
        trials = run_trials(ref, folder, workdir, 1 if quick else max(1, min(runs, 3)), log)
    finally:
        if own:
            ref.stop()
    out = _summary(files, size, trials)
    log(f"  batch: {out['files_per_s']:.0f} files/s, RSS growth {out['rss_growth'] / MiB:.1f} MiB (median)")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.batch", description=__doc__)
    p.add_argument("--child", nargs=3, metavar=("FOLDER", "URL", "HOME"), help=argparse.SUPPRESS)
    p.add_argument("--tag", help=argparse.SUPPRESS)
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workdir", type=Path)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child)))
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="nbupload-batch-bench-"))
    from .servers import set_bench_home

    set_bench_home(workdir / "home")
    ref = start_reference(workdir / "root")
    try:
        folder = make_tree(workdir / f"batch-{args.files}", args.files, args.size)
        trials = run_trials(ref, folder, workdir, args.runs, lambda s: print(s, file=sys.stderr, flush=True))
    finally:
        ref.stop()
    out = _summary(args.files, args.size, trials)
    print("\n".join(out["markdown"]))
    return 0 if os.environ.get("NBUPLOAD_BENCH_STRICT") is None or out["files_per_s"] >= 200 else 1


if __name__ == "__main__":
    sys.exit(main())
