"""``nbupload demo``: the whole story in well under a minute, on loopback.

Starts the reference server in a temp dir, generates a file, uploads it with live
progress with both protocols (uploader, then WCS append with a freshly generated demo
key pair), pauses each upload part way and resumes it, and checks sha256 of what landed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..units import format_size, parse_size
from . import CommandError

__all__ = ["register", "run_demo"]


def _make_file(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            h.update(block)
            f.write(block)
            left -= len(block)
    return h.hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _say(text: str = "") -> None:
    print(text, flush=True)


def _run_one(engine: Any, bars: Any, label: str, src: Path, url: str, pause_at: float, **opts: Any) -> Any:
    from ..engine import TaskState

    task = engine.submit(src, url, **opts)
    _say(f"\n[{label}] task {task.id}: {src.name} ({format_size(task.total)}) -> {url}")
    deadline = time.monotonic() + 30
    while task.acked < pause_at * task.total and task.state not in (TaskState.DONE, TaskState.FAILED):
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    task.pause()
    snap = task.wait(10)
    engine.flush_events()
    bars.close()
    if snap.state is TaskState.PAUSED:
        _say(
            f"[{label}] paused at {format_size(snap.acked)} of {format_size(snap.total)} "
            f"(journal entry kept: the upload survives a restart)"
        )
        time.sleep(0.5)
        _say(f"[{label}] resuming: the server is asked what it holds, only the rest is sent")
        task.resume()
    snap = task.wait(60)
    engine.flush_events()
    bars.close()
    if snap.state is not TaskState.DONE:
        raise CommandError(f"[{label}] upload {snap.state.value}: {snap.error}", 1)
    took = (snap.finished_at or 0) - (snap.started_at or 0)
    _say(f"[{label}] done in {took:.1f} s, {snap.attempts} requests")
    return snap


def run_demo(size: int = 16 << 20, keep: str | None = None, rate: float = 10e6) -> int:
    from ..engine import Engine, EngineConfig
    from ..server import start_server
    from .upload import ProgressBars

    base = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="nbupload-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    access_key = "demo-" + secrets.token_hex(4)
    secret_key = secrets.token_urlsafe(24)
    src = base / "demo-data.bin"
    _say(f"nbupload demo: working in {base}")
    digest = _make_file(src, size)
    _say(f"generated {src.name}: {format_size(size)}, sha256 {digest}")
    ok = True
    try:
        with start_server(root=base / "server", credentials={access_key: secret_key}, throttle=rate) as srv:
            _say(
                f"reference server on {srv.url} (root {srv.root}), paced at {format_size(rate)}/s "
                f"so the progress is visible; WCS demo key pair {access_key} / (secret generated)"
            )
            engine = Engine(EngineConfig(journal_dir=base / "journal", chunk_size=1 << 20, workers=2))
            bars = ProgressBars(enabled=True)
            unsubscribe = engine.subscribe(bars)
            try:
                _run_one(engine, bars, "uploader", src, srv.upload_url, 0.4, filename=src.name)
                wsnap = _run_one(
                    engine,
                    bars,
                    "wcs-append",
                    src,
                    srv.url,
                    0.4,
                    protocol="wcs-append",
                    access_key=access_key,
                    secret_key=secret_key,
                    scope="demo-bucket",
                    key="demo/data.bin",
                )
            finally:
                unsubscribe()
                engine.shutdown()
            _say("\nchecks:")
            for label, path in (
                ("uploader", srv.root / src.name),
                ("wcs-append", srv.root / "demo-bucket" / "demo" / "data.bin"),
            ):
                got = _sha256(path) if path.exists() else "(missing)"
                good = got == digest
                ok &= good
                _say(f"  {label:<10} {path}\n             sha256 {got} {'OK' if good else 'MISMATCH'}")
            result = wsnap.result or {}
            verdict = "matches the server's hash" if result.get("verified") else "not confirmed by the server"
            _say(f"  WCS etag {result.get('hash')} computed while streaming: {verdict}")
            stats = srv.stats()
            _say(
                f"  server received {format_size(stats['total']['bytes'])} of file data for "
                f"{format_size(2 * size)} uploaded ({format_size(stats['total']['duplicate_bytes'])} duplicated)"
            )
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    _say("\nall checks passed" if ok else "\nSOME CHECKS FAILED")
    return 0 if ok else 1


def _cmd(args: argparse.Namespace) -> int:
    try:
        size = parse_size(args.size)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if size <= 0:
        raise CommandError("--size must be positive")
    return run_demo(size, args.keep)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="upload a generated file to a local reference server, pause, resume",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--size", default="16MiB", help="size of the generated file (default 16MiB)")
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep the files afterwards")
    p.set_defaults(func=_cmd)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo())
