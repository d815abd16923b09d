"""Items 4 and 5: resume waste after SIGKILL, cancel latency, time from resume to first byte.

Resume waste, per protocol (``uploader`` and ``wcs-append``, 4 MiB chunks), against the
reference server: ``nbupload put FILE URL --quiet`` runs as its own process until the
server has counted half the file's bytes, then gets SIGKILL; ``nbupload resume --all``
(a new process, same ``NBUPLOAD_HOME``) finishes it. The server's file-byte counter for
the whole story minus the file size is what was sent twice; the stored file must have
the right size. The time from spawning ``nbupload resume`` to the server's first new
byte (interpreter start-up included) is recorded too.

Cancel latency and the in-process resume time come from :mod:`benchmarks.control`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .clients import CHUNK_SIZE, engine_streams
from .files import make_dense, warm
from .proc import run_child
from .servers import Target, child_env, start_reference
from .stats import summarize

__all__ = ["run_section"]

MiB = float(1 << 20)
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
THROTTLE = "64MiB"


def _bytes(target: Target, protocol: str) -> int:
    with _OPENER.open(target.server.url + "/_nbupload/stats", timeout=10) as resp:
        stats = json.loads(resp.read())
    return int(stats["wcs" if protocol == "wcs-append" else "uploader"]["bytes"])


def _wcs_args(target: Target, key: str) -> list[str]:
    return [
        "--ak",
        target.access_key,
        "--sk",
        target.secret_key,
        "--scope",
        f"{target.bucket}:{key}",
        "--key",
        key,
    ]


def _wait(pred: Callable[[], bool], timeout: float, step: float = 0.002) -> float:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise TimeoutError("timed out")
        time.sleep(step)
    return time.monotonic()


def _end(proc: subprocess.Popen) -> str:
    """SIGKILL ``proc`` if it still runs, reap it, and return what it wrote to stderr."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    return err


def kill_and_resume(
    target: Target, path: Path, size: int, protocol: str, home: Path, timeout: float = 300.0
) -> dict[str, Any]:
    """One trial: put, SIGKILL at half, resume; bytes counted by the server."""
    target.clear_root()
    home.mkdir(parents=True, exist_ok=True)
    env = child_env(NBUPLOAD_HOME=str(home))
    base = _bytes(target, protocol)
    url = target.wcs_url if protocol == "wcs-append" else target.upload_url
    put = [sys.executable, "-m", "nbupload", "put", str(path), str(url), "--protocol", protocol,
           "--chunk-size", str(CHUNK_SIZE), "--quiet"]  # fmt: skip
    creds: list[str] = []
    if protocol == "wcs-append":
        put += _wcs_args(target, path.name)
        creds = ["--ak", target.access_key, "--sk", target.secret_key]
    # "About half", in the middle of a chunk: the worst case, a request cut short.
    kill_at = min(size - 1, size // 2 + CHUNK_SIZE // 2)
    proc = subprocess.Popen(put, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait(lambda: _bytes(target, protocol) - base >= kill_at or proc.poll() is not None, timeout)
    finally:
        err = _end(proc)
    if proc.returncode != -signal.SIGKILL:
        raise RuntimeError(
            f"nbupload put ended before the kill (exit {proc.returncode}): {err.strip()[-300:]}"
        )
    time.sleep(0.3)  # the server notices the dead connection
    at_kill = _bytes(target, protocol) - base
    t0 = time.monotonic()
    res = subprocess.Popen([sys.executable, "-m", "nbupload", "resume", "--all", "--quiet", *creds], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        first = _wait(
            lambda: _bytes(target, protocol) - base > at_kill or res.poll() is not None, timeout, 0.001
        )
        res.wait(timeout)
    finally:
        rerr = _end(res)
    if res.returncode != 0:
        raise RuntimeError(f"nbupload resume failed (exit {res.returncode}): {rerr.strip()[-300:]}")
    total = _bytes(target, protocol) - base
    stored = target.received_file_bytes(size)
    target.clear_root()
    if stored != size:
        raise RuntimeError(f"after resume the server holds {stored} bytes of {size}")
    return {"at_kill": at_kill, "total": total, "resent": total - size, "resume_first_byte": first - t0}


def control_trial(target: Target, path: Path, size: int, protocol: str, home: Path) -> dict[str, Any]:
    target.clear_root()
    url = target.wcs_url if protocol == "wcs-append" else target.upload_url
    argv = [sys.executable, "-m", "benchmarks.control", str(path), str(url), target.server.url + "/_nbupload/stats",
            "--size", str(size), "--protocol", protocol, "--chunk-size", str(CHUNK_SIZE)]  # fmt: skip
    if protocol == "wcs-append":
        argv += ["--access-key", target.access_key, "--secret-key", target.secret_key,
                 "--scope", f"{target.bucket}:{path.name}", "--key", path.name]  # fmt: skip
    home.mkdir(parents=True, exist_ok=True)
    child = run_child(argv, env=child_env(NBUPLOAD_HOME=str(home)), timeout=600)
    target.clear_root()
    if not child.ok or not child.report:
        raise RuntimeError(f"control run failed: {child.describe_failure()}")
    return child.report


def _ms(d: dict[str, float] | None) -> str:
    if not d:
        return "-"
    return f"{d['median'] * 1000:.0f} ms ({d['min'] * 1000:.0f}–{d['max'] * 1000:.0f})"


def run_section(*, targets: list[Target], workdir: Path, quick: bool, runs: int, preset: dict[str, Any],
                log: Callable[[str], None], **_: Any) -> dict[str, Any]:  # fmt: skip
    from nbupload.units import parse_size

    size = parse_size(str(preset["resume_size"]))
    ref = next((t for t in targets if t.name == "reference"), None)
    own = ref is None
    if ref is None:
        ref = start_reference(workdir / "resume-root")
    # The kill must land inside a request, as it would on a real link: the reference
    # server reads at THROTTLE, so a 4 MiB chunk takes about 60 ms to go out.
    slow = start_reference(workdir / "resume-slow-root", throttle=THROTTLE)
    path = make_dense(workdir / "resume.bin", size)
    warm(path)
    trials = max(1, min(runs, 3) if not quick else 1)
    rows: list[dict[str, Any]] = []
    md = [
        f"File {size / MiB:.0f} MiB, reference server reading at {THROTTLE}/s (`--throttle`, so that the kill lands "
        f"inside a request as on a real link), 4 MiB chunks; {trials} trial(s) each. "
        "`nbupload put` is killed with SIGKILL once the server has counted half the file plus half a "
        "chunk (so a request is cut short), then "
        "`nbupload resume --all` finishes the upload; *re-sent* is the server's file-byte count for the "
        "whole story minus the file size.",
        "",
        "| protocol | re-sent (median, max) | bytes held at kill | `nbupload resume` spawn → first new byte |",
        "|---|--:|--:|--:|",
    ]
    try:
        for protocol in ("uploader", "wcs-append"):
            results, errors = [], []
            for i in range(trials):
                try:
                    r = kill_and_resume(slow, path, size, protocol, workdir / f"home-{protocol}-{i}")
                    results.append(r)
                    log(
                        f"  resume {protocol:10} killed at {r['at_kill'] / MiB:7.1f} MiB, re-sent "
                        f"{r['resent'] / MiB:6.2f} MiB, first new byte after {r['resume_first_byte'] * 1000:.0f} ms"
                    )
                except Exception as exc:
                    errors.append(str(exc))
                    log(f"  resume {protocol:10} FAILED {exc}")
            resent = summarize(r["resent"] for r in results)
            first = summarize(r["resume_first_byte"] for r in results)
            row = {
                "protocol": protocol,
                "size": size,
                # requests in flight per task: the engine's streams (issue 10: waste <= streams x chunk)
                "workers": engine_streams() or 1,
                "chunk_size": CHUNK_SIZE,
                "trials": results,
                "errors": errors,
                "resent": resent.max if resent else None,
                "resent_summary": resent.as_dict() if resent else None,
                "resume_first_byte": first.as_dict() if first else None,
            }
            rows.append(row)
            held = summarize(r["at_kill"] for r in results)
            if resent and held:
                md.append(
                    f"| {protocol} | {resent.median / MiB:.2f} MiB, {resent.max / MiB:.2f} MiB | "
                    f"{held.median / MiB:.1f} MiB | {_ms(row['resume_first_byte'])} |"
                )
            else:
                md.append(f"| {protocol} | failed: {errors[0] if errors else '?'} | - | - |")
        # cancel latency and in-process resume, uploader protocol
        controls, cerrors = [], []
        for i in range(max(1, runs if not quick else 1)):
            try:
                c = control_trial(ref, path, size, "uploader", workdir / f"home-control-{i}")
                controls.append(c)
                log(
                    f"  control: pause {c['pause_latency'] * 1000:.0f} ms, resume->byte "
                    f"{c['resume_first_byte'] * 1000:.0f} ms, cancel {c['cancel_latency'] * 1000:.0f} ms, "
                    f"wire stop {c['cancel_wire_stop'] * 1000:.0f} ms"
                )
            except Exception as exc:
                cerrors.append(str(exc))
                log(f"  control FAILED {exc}")
        cancel = {
            "latency": _d(summarize(c["cancel_latency"] for c in controls)),
            "wire_stop": _d(summarize(c["cancel_wire_stop"] for c in controls)),
            "pause_latency": _d(summarize(c["pause_latency"] for c in controls)),
            "resume_first_byte": _d(summarize(c["resume_first_byte"] for c in controls)),
            "trials": controls,
            "errors": cerrors,
        }
        md += [
            "",
            f"In one process, against the unthrottled reference server (`benchmarks/control.py`, uploader protocol, {len(controls)} trial(s), "
            "median (min–max)):",
            "",
            "| figure | measured |",
            "|---|--:|",
            f"| cancel latency: `task.cancel()` → state `cancelled` | {_ms(cancel['latency'])} |",
            f"| cancel → the server's last byte of the upload | {_ms(cancel['wire_stop'])} |",
            f"| pause latency: `task.pause()` → state `paused` | {_ms(cancel['pause_latency'])} |",
            f"| `task.resume()` → the server's first new byte | {_ms(cancel['resume_first_byte'])} |",
        ]
    finally:
        path.unlink(missing_ok=True)
        slow.clear_root()
        slow.stop()
        if own:
            ref.stop()
    return {"rows": rows, "cancel": cancel, "markdown": md, "throttle": THROTTLE}


def _d(s: Any) -> dict[str, float] | None:
    return s.as_dict() if s else None
