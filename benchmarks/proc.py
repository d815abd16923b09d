"""Run one client as its own process and collect what the kernel says it cost.

CPU and peak memory come from ``wait4`` on the client process itself. Linux keeps, across
``exec``, the memory high-water mark of the image a process was forked from, so a client
forked straight from this harness (30+ MiB) would report at least the harness's RSS. Each
client is therefore started by a minimal launcher (``python -I -S``, about 8 MiB) that
reads its own high-water mark, forks, execs the client, ``wait4``s it and reports the
client's ``ru_maxrss`` and CPU on a separate pipe. A peak above the launcher's mark is the
client's own, exactly; a client that stays below it (none measured here does) is reported
as "at most" that mark.

Python clients also print one JSON line with timestamps taken right around the upload
call (``time.monotonic``, system-wide on Linux) and the CPU spent inside it, so
interpreter start-up and imports can be told apart from the transfer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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
    maxrss: int  # bytes: peak resident set of the client process
    started: float  # time.monotonic() at spawn
    stdout: str = ""
    stderr: str = ""
    report: dict[str, Any] = field(default_factory=dict)  # the client's JSON line, if any
    timed_out: bool = False
    maxrss_at_most: bool = False  # the client stayed under the launcher's mark: maxrss is an upper bound

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


_LAUNCHER = r"""
import os, sys
def hwm():
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0
fd = int(sys.argv[1])
floor = hwm()
pid = os.fork()
if pid == 0:
    os.close(fd)
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
os.write(fd, ("%d %d %r %r %d" % (pid, ru.ru_maxrss * 1024, ru.ru_utime, ru.ru_stime, floor)).encode())
os.close(fd)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def _kill_tree(pid: int) -> None:
    """SIGKILL the launcher's process group members we started: the launcher and its child."""
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        children = []
    for p in [*map(int, children), pid]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


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
) -> ChildResult:
    """Run ``argv`` to completion (killing it after ``timeout`` s) and measure it."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        rfd, wfd = os.pipe()
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(wfd), *argv],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd, pass_fds=(wfd,),
            )  # fmt: skip
        finally:
            os.close(wfd)
        try:
            proc.wait(timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_tree(proc.pid)
            proc.wait()
        wall = time.monotonic() - started
        with os.fdopen(rfd, "rb") as f:
            usage = f.read().decode().split()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    report = _last_json_line(stdout)
    if len(usage) == 5:
        _pid, maxrss, utime, stime, floor = (
            int(usage[0]),
            int(usage[1]),
            float(usage[2]),
            float(usage[3]),
            int(usage[4]),
        )
    else:  # the launcher itself died
        maxrss, utime, stime, floor = 0, 0.0, 0.0, 0
    self_hwm = int(report.get("vm_hwm", 0))
    at_most = maxrss <= floor
    return ChildResult(
        argv=list(argv),
        returncode=proc.returncode,
        wall=wall,
        user=utime,
        sys=stime,
        maxrss=max(maxrss, self_hwm) if not at_most else max(self_hwm, floor),
        maxrss_at_most=at_most and not self_hwm,
        started=started,
        stdout=stdout,
        stderr=stderr,
        report=report,
        timed_out=timed_out,
    )
