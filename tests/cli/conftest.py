from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # `tests.support` importable

from tests.support.helpers import child_env  # noqa: E402
from tests.support.signals import python_argv  # noqa: E402


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private NBUPLOAD_HOME for the CLI processes (and this one)."""
    h = tmp_path / "home"
    monkeypatch.setenv("NBUPLOAD_HOME", str(h))
    for name in ("NBUPLOAD_TOKEN", "NBUPLOAD_ACCESS_KEY", "NBUPLOAD_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    return h


@pytest.fixture
def cli(home):
    """Run ``nbupload ARGS`` in a child process: ``cli("put", ...)`` -> CompletedProcess."""

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nbupload", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env(),
            cwd=ROOT,
        )

    started: list[subprocess.Popen[str]] = []

    def popen(*args: str, sigint: str = "default") -> subprocess.Popen[str]:
        """``nbupload ARGS`` started with SIGINT at its default (or ``"ignore"``d, as a
        background job), whatever this test run inherited; killed at teardown if still running."""
        proc = subprocess.Popen(
            python_argv("-m", "nbupload", *args, sigint=sigint),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=ROOT,
        )
        started.append(proc)
        return proc

    run.popen = popen  # type: ignore[attr-defined]
    yield run
    for proc in started:  # a failed test leaves nothing running
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
