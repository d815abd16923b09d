"""Run one client as its own process and collect what the kernel says it cost.

``os.wait4`` gives the child's own CPU time (user and system seconds, all threads), with
nothing of the harness mixed in. Its ``ru_maxrss`` cannot be used for memory: Linux keeps,
across ``exec``, the high-water mark of the memory image the child was forked from, so
every child would report at least the harness's own RSS (30 MiB here, more than curl
uses). Peak RSS is therefore ``VmHWM`` from ``/proc/PID/status``, which belongs to the
executed image alone: the harness samples it every ``poll`` seconds while the child runs
(it only grows, so the last sample is at most one poll interval stale) and Python clients
also report their own at the end of the upload.
Python clients also print one JSON line with timestamps taken right around the upload
call (``time.monotonic``, which is system-wide on Linux, so the harness can compare it
with its own clock) and the CPU spent inside it, so interpreter start-up and imports can
be told apart from the transfer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChildResult", "run_child"]


@dataclass
class ChildResult:
    """One finished client process."""

    argv: list[str]
    returncode: int
    wall: float  # spawn to exit, seconds
    user: float  # CPU seconds, whole process
    sys: float
    maxrss: int  # bytes: peak resident set of the client's own image (VmHWM)
    started: float  # time.monotonic() at spawn
    stdout: str = ""
    stderr: str = ""
    report: dict[str, Any] = field(default_factory=dict)  # the client's JSON line, if any
    timed_out: bool = False
    maxrss_wait4: int = 0  # ru_maxrss: includes the harness's RSS inherited at fork, see below

    @property
    def cpu(self) -> float:
        return self.user + self.sys

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def transfer_seconds(self) -> float:
        """The upload's own duration: from the client's report, else the whole process."""
        if "t0" in self.report and "t1" in self.report:
            return float(self.report["t1"]) - float(self.report["t0"])
        if "time_total" in self.report:
            return float(self.report["time_total"])
        return self.wall

    def transfer_cpu(self) -> float:
        """CPU seconds of the upload itself when the client reports it, else the process's."""
        if "cpu" in self.report:
            return float(self.report["cpu"])
        return self.cpu

    def describe_failure(self) -> str:
        tail = (self.stderr or self.stdout).strip().splitlines()[-3:]
        why = "timed out" if self.timed_out else f"exit {self.returncode}"
        return f"{why}: {' | '.join(tail)}" if tail else why


def _vm_hwm(pid: int) -> int:
    """The process's peak RSS so far (``VmHWM``, bytes); 0 once it has gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _last_json_line(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    return {}


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float = 600.0,
    poll: float = 0.01,
) -> ChildResult:
    """Run ``argv`` to completion (killing it after ``timeout`` s) and measure it."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        hwm = 0
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            hwm = max(hwm, _vm_hwm(proc.pid))
            if not timed_out and time.monotonic() - started > timeout:
                timed_out = True
                os.kill(proc.pid, signal.SIGKILL)
            time.sleep(poll)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    report = _last_json_line(stdout)
    return ChildResult(
        argv=list(argv),
        returncode=proc.returncode,
        wall=wall,
        user=usage.ru_utime,
        sys=usage.ru_stime,
        maxrss=max(hwm, int(report.get("vm_hwm", 0))),
        maxrss_wait4=usage.ru_maxrss * 1024,
        started=started,
        stdout=stdout,
        stderr=stderr,
        report=report,
        timed_out=timed_out,
    )
