"""The ``nbupload`` command in a child process, as a user runs it: its own home, no
credentials inherited from the environment, and the SIGKILL-mid-upload step that resume
tests share."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["cli_env", "cli_killed_after", "journal_acked", "journal_files", "run_cli", "sigkill_when"]


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


def journal_files(home: Path) -> list[Path]:
    """The task files in ``home``'s journal, sorted (none before the first one is written)."""
    journal = home / "tasks"
    return sorted(journal.glob("*.json")) if journal.is_dir() else []


def journal_acked(home: Path) -> int:
    """The bytes acknowledged in ``home``'s first journal entry; 0 while there is none."""
    entries = journal_files(home)
    return int(json.loads(entries[0].read_text())["acked"]) if entries else 0


def sigkill_when(
    proc: subprocess.Popen[Any], condition: Callable[[], object], *, timeout: float = 60, reap: float = 30
) -> None:
    """Wait (up to ``timeout`` s) for ``condition``, then SIGKILL ``proc`` mid-upload and reap
    it within ``reap`` s; if the wait fails, ``proc`` is killed and reaped all the same."""
    try:
        wait_for(condition, timeout=timeout)
        proc.send_signal(signal.SIGKILL)
        proc.wait(reap)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def cli_killed_after(*args: str, home: Path, acked: int, timeout: float = 60) -> dict[str, Any]:
    """Start ``nbupload ARGS``, SIGKILL it once its journal entry has ``acked`` bytes
    acknowledged, and return that entry as it was left (the JSON the journal holds)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbupload", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cli_env(home),
    )
    sigkill_when(proc, lambda: journal_acked(home) >= acked, timeout=timeout)
    left = json.loads(journal_files(home)[0].read_text())
    assert isinstance(left, dict)
    return left
