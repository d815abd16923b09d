"""The servers under test, each started as its own process on an ephemeral port.

A :class:`Target` is what a client needs to upload somewhere (URLs, WCS credentials) plus
what the harness needs around a run: counters to reset and read, and a check that the
upload arrived whole. The fast sink counts the file bytes it saw; the reference server's
stored file is looked at on disk and removed after each run, so repeated runs of a 1 GiB
file do not fill the disk.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "REPO_ROOT",
    "ServerProcess",
    "Target",
    "child_env",
    "empty_dir",
    "set_bench_home",
    "start_reference",
    "start_sink",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
_URL = re.compile(r"(https?://[0-9.:\[\]a-zA-Z-]+)")

_home = [os.path.join(tempfile.gettempdir(), "nbupload-bench-home")]


def set_bench_home(path: Path) -> None:
    """Where nbupload children keep their journal (the run's temp dir, never the user's)."""
    _home[0] = str(path)


#: Credentials the reference server is started with for WCS append (benchmark-only values).
BENCH_ACCESS_KEY = "bench-ak"
BENCH_SECRET_KEY = "bench-sk-not-a-secret"
BENCH_BUCKET = "bench"


def child_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: this repository importable, no proxies, and
    nbupload's journal in a directory of the benchmark's own (``NBUPLOAD_HOME``)."""
    env = dict(os.environ)
    env["NBUPLOAD_HOME"] = _home[0]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(name, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def _get_json(url: str, method: str = "GET") -> Any:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


@dataclass
class ServerProcess:
    """A server child process; ``stop()`` ends it (and only it)."""

    proc: subprocess.Popen[bytes]
    url: str
    log: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    @property
    def pid(self) -> int:
        return self.proc.pid


def _spawn(argv: list[str], env: dict[str, str], timeout: float = 30.0) -> ServerProcess:
    """Start ``argv`` and wait for its first line naming a URL."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=str(REPO_ROOT),
    )
    assert proc.stdout is not None
    lines: list[str] = []
    found: list[str] = []
    done = threading.Event()

    def pump() -> None:
        for raw in proc.stdout:  # keep draining so the child never blocks on a full pipe
            line = raw.decode("utf-8", "replace").rstrip()
            lines.append(line)
            del lines[:-200]
            m = _URL.search(line)
            if m and not found and "serving" in line:
                found.append(m.group(1))
                done.set()
        done.set()

    threading.Thread(target=pump, daemon=True).start()
    if not done.wait(timeout) or not found:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{' '.join(argv[:4])} did not start: {' | '.join(lines[-5:]) or 'no output'}")
    return ServerProcess(proc, found[0], lines)


@dataclass
class Target:
    """A server the clients upload to."""

    name: str
    server: ServerProcess
    upload_url: str  # multipart POST (plain, uploader chunks, curl -F, httpx, toolbelt)
    raw_url: str | None  # raw-body PUT (curl -T); None when the server takes none
    wcs_url: str | None  # base URL for /append/<position>
    root: Path | None = None  # where the reference server stores uploads
    access_key: str = BENCH_ACCESS_KEY
    secret_key: str = BENCH_SECRET_KEY
    bucket: str = BENCH_BUCKET

    @property
    def is_sink(self) -> bool:
        return self.root is None

    def reset(self) -> None:
        if self.is_sink:
            _get_json(self.server.url + "/_sink/reset", "POST")
        else:
            self.clear_root()

    def stats(self) -> dict[str, Any]:
        if self.is_sink:
            return dict(_get_json(self.server.url + "/_sink/stats"))
        return dict(_get_json(self.server.url + "/_nbupload/stats"))

    def received_file_bytes(self, size: int) -> int | None:
        """File bytes that reached the server in the last run (sink: counted; reference: on disk)."""
        if self.is_sink:
            return int(self.stats()["file_bytes"])
        assert self.root is not None
        sizes = [
            p.stat().st_size for p in self.root.rglob("*") if p.is_file() and not _is_internal(p, self.root)
        ]
        return max(sizes) if sizes else 0

    def clear_root(self) -> None:
        if self.root is not None:
            empty_dir(self.root)

    def stop(self) -> None:
        self.server.stop()


def empty_dir(folder: Path) -> None:
    """Remove everything in ``folder`` but keep it (a server's root between runs: the next
    run stores, and is measured storing, everything again). Links are removed, not followed."""
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _is_internal(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def start_sink() -> Target:
    server = _spawn([sys.executable, "-m", "benchmarks.sink", "--port", "0"], child_env())
    return Target("sink", server, server.url + "/upload", server.url + "/upload", server.url)


def start_reference(root: Path, throttle: str | None = None) -> Target:
    """``python -m nbupload serve --port 0 --root DIR`` with the benchmark's WCS credentials
    (and ``--throttle RATE`` when given)."""
    root.mkdir(parents=True, exist_ok=True)
    creds = root.parent / f"{root.name}.credentials"
    creds.write_text(f"{BENCH_ACCESS_KEY}:{BENCH_SECRET_KEY}\n", encoding="utf-8")
    argv = [
        sys.executable,
        "-m",
        "nbupload",
        "serve",
        "--port",
        "0",
        "--root",
        str(root),
        "--credentials-file",
        str(creds),
    ]
    if throttle:
        argv += ["--throttle", throttle]
    server = _spawn(argv, child_env())
    _wait_ready(server.url + "/_nbupload/stats")
    return Target("reference", server, server.url + "/upload", None, server.url, root=root)


def _wait_ready(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _get_json(url)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
