"""The ``nbupload`` command in a child process, as a user runs it: its own home, no
credentials inherited from the environment, and the SIGKILL-mid-upload step that resume
tests share."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from .helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["cli_env", "cli_killed_after", "run_cli"]


def cli_env(home: Path) -> dict[str, str]:
    """This environment with ``NBUPLOAD_HOME=home``, the checkout importable, no credentials."""
    env = dict(os.environ)
    env["NBUPLOAD_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("NBUPLOAD_TOKEN", "NBUPLOAD_ACCESS_KEY", "NBUPLOAD_SECRET_KEY"):
        env.pop(name, None)
    return env


def run_cli(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``nbupload ARGS`` to completion (text output captured)."""
    return subprocess.run(
        [sys.executable, "-m", "nbupload", *args],
        capture_output=True,
        text=True,
        env=cli_env(home),
        timeout=timeout,
        check=False,
    )


def cli_killed_after(*args: str, home: Path, acked: int, timeout: float = 60) -> dict[str, Any]:
    """Start ``nbupload ARGS``, SIGKILL it once its journal entry has ``acked`` bytes
    acknowledged, and return that entry as it was left (the JSON the journal holds)."""
    journal = home / "tasks"

    def entry() -> dict[str, Any] | None:
        entries = sorted(journal.glob("*.json")) if journal.is_dir() else []
        if not entries:
            return None
        data: dict[str, Any] = json.loads(entries[0].read_text())
        return data if data["acked"] >= acked else None

    proc = subprocess.Popen(
        [sys.executable, "-m", "nbupload", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cli_env(home),
    )
    try:
        wait_for(entry, timeout=timeout)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = json.loads(sorted(journal.glob("*.json"))[0].read_text())
    assert isinstance(left, dict)
    return left
