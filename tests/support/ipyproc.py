"""IPython in a child process, as a kernel a user restarts: run an ``.ipy`` script with its
own nbupload home, wait for the line it prints once its upload is under way, SIGKILL it; then
run the next kernel's script to its end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["first_kernel", "ipython", "kill_once_started", "output_of"]


def ipython(script: str, home: Path, tmp_path: Path, name: str) -> subprocess.Popen[str]:
    """Run ``script`` (an ``.ipy`` file named ``name``) in ``python -m IPython``; stdout and
    stderr together on ``stdout``."""
    path = tmp_path / f"{name}.ipy"
    path.write_text(script)
    env = {**os.environ, "NBUPLOAD_HOME": str(home), "IPYTHONDIR": str(tmp_path / "ipythondir")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, "-m", "IPython", "--quick", "--no-banner", "--colors=nocolor", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )


def first_kernel(
    upload: str, home: Path, tmp_path: Path, *, started_when: str = "acked > 0", linger: float = 120
) -> subprocess.Popen[str]:
    """The kernel that dies mid-upload: ``%upload UPLOAD`` (the magic's arguments), wait until
    the snapshot of what it returned has ``started_when`` (e.g. ``files_done >= 3``), print
    ``STARTED <id>`` for :func:`kill_once_started`, then idle ``linger`` seconds to be killed.
    Every restart test starts its first kernel this way, so they differ only in the upload."""
    script = (
        "%load_ext nbupload\n"
        f"u = %upload {upload}\n"
        "import time\n"
        f"while not (u.snapshot().{started_when}): time.sleep(0.02)\n"
        "print('STARTED', u.id, flush=True)\n"
        f"time.sleep({linger})\n"
    )
    return ipython(script, home, tmp_path, "first")


def kill_once_started(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    """Wait for the script's ``STARTED <id>`` line, SIGKILL the process (the kernel dies
    mid-upload) and return the id."""
    try:
        line = ""
        deadline = time.monotonic() + timeout
        while not line.startswith("STARTED") and time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout is not None else ""
            assert line or proc.poll() is None, "the first kernel died early"
        assert line.startswith("STARTED"), f"no STARTED line within {timeout} s"
        return line.split()[1]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


def output_of(proc: subprocess.Popen[str], timeout: float) -> str:
    """Everything ``proc`` prints until it exits (within ``timeout`` seconds); killed and reaped
    if it has not exited by then (``communicate`` raises ``TimeoutExpired``)."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return out
