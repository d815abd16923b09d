"""Test-side plumbing for hostile and fault tests: a real server process, raw HTTP over sockets.

``ServerProcess`` runs the reference server (``start_server``, as ``nbupload serve`` does) in a
child process, logging at DEBUG (so its RSS can be measured, its log scanned for secrets, a
``RLIMIT_FSIZE`` set on it alone, and it can be killed with SIGKILL and restarted on the
same root). ``raw_exchange`` writes exact bytes to a socket, optionally dribbled with
pauses, and reads the answer with :mod:`http.client`'s parser: requests httpx would refuse
to build (NUL in a filename, duplicated boundaries, a Content-Length far larger than the
body) go out as they are.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from tests.support.rawhttp import RawResponse, read_answer

__all__ = [
    "RawResponse",
    "ServerProcess",
    "form_part",
    "http_request",
    "multipart",
    "raw_exchange",
]

_SERVING = re.compile(r"serving on (http://[^\s]+)")
PYTHON = sys.executable

#: The child: ``start_server`` with the given options, DEBUG logging of every logger to
#: stderr (scanned for secrets), the CLI's "serving on" line, and a clean stop on SIGTERM.
_LAUNCHER = """
import json, logging, os, signal, sys, threading
opts = json.loads(sys.argv[1])
level = opts.pop("log_level")
logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                    format="%(asctime)s %(name)s %(levelname)s %(message)s")
idle = opts.pop("body_idle_timeout", None)
if idle is not None:  # a test's short stand-in for the server's 60 s body idle timeout
    opts["body_timeout"] = idle
from nbupload.server import start_server
handle = start_server(**opts, log_level=level)
def stop(*_):
    handle.stop(timeout=3)
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
print(f"nbupload: serving on {handle.url} (root {handle.root})", flush=True)
threading.Event().wait()
"""


class ServerProcess:
    """The reference server in a child process on an ephemeral loopback port; keyword
    options go to ``start_server``."""

    def __init__(
        self,
        root: Path,
        *,
        credentials: dict[str, str] | None = None,
        fsize_limit: int | None = None,
        log_level: str = "debug",
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        **options: object,
    ) -> None:
        self.root = Path(root)
        self.credentials = dict(credentials or {})
        self.options = options
        self.log_level = log_level
        self.fsize_limit = fsize_limit
        self.log_path = log_path or self.root.parent / f"server-{self.root.name}.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.starts = 0

    # -- life cycle ------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> ServerProcess:
        cmd = [
            PYTHON,
            "-c",
            _LAUNCHER,
            json.dumps(
                {
                    "root": str(self.root),
                    "credentials": self.credentials,
                    "log_level": self.log_level,
                    **self.options,
                }
            ),
        ]
        limit = self.fsize_limit

        def preexec() -> None:  # runs in the child only
            os.setsid()
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
                # Python ignores SIGXFSZ, so an oversized write fails with EFBIG instead of
                # killing the server: exactly a full disk as the server sees it.
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open by the child
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, preexec_fn=preexec, env=env)
        log.close()
        self.starts += 1
        found: list[str] = []

        def reader() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace")
                with open(self.log_path, "a", encoding="utf-8") as out:
                    out.write(line)
                if not found:
                    m = _SERVING.search(line)
                    if m:
                        found.append(m.group(1))

        threading.Thread(target=reader, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server did not start in {timeout}s: {self.log_text()[-2000:]}")
            time.sleep(0.02)
        self.url = found[0].rstrip("/")
        return self

    def restart(self) -> ServerProcess:
        """Start again on the same root (after :meth:`kill` or :meth:`stop`)."""
        return self.start()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observation -----------------------------------------------------------------------
    def rss(self) -> int:
        return psutil.Process(self.pid).memory_info().rss

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 80


# --------------------------------------------------------------------------- raw HTTP
def http_request(
    method: str,
    path: str | bytes,
    headers: Sequence[tuple[str | bytes, str | bytes]] = (),
    body: bytes = b"",
    *,
    host: str = "127.0.0.1",
    content_length: int | str | None | bool = True,
) -> bytes:
    """Exact request bytes. ``content_length``: True = the body's length, an int or str =
    that value as given (lies welcome), False/None = no header."""

    def b(x: str | bytes) -> bytes:
        return x if isinstance(x, bytes) else x.encode("latin-1")

    lines = [b(method) + b" " + b(path) + b" HTTP/1.1", b"Host: " + b(host)]
    lines += [b(k) + b": " + b(v) for k, v in headers]
    if content_length is True:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    elif content_length not in (None, False):
        lines.append(b"Content-Length: " + str(content_length).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def raw_exchange(
    address: tuple[str, int],
    pieces: bytes | Iterable[bytes | float],
    *,
    timeout: float = 20.0,
    half_close: bool = False,
) -> RawResponse | None:
    """Send ``pieces`` (bytes, or an iterable of bytes and float pauses) and read the answer.

    ``half_close`` shuts the write side after sending (the body "ends early"). Returns
    ``None`` when the server closed without answering.
    """
    sock = socket.create_connection(address, timeout=timeout)
    try:
        items = [pieces] if isinstance(pieces, bytes) else pieces
        try:
            for item in items:
                if isinstance(item, (int, float)):
                    time.sleep(item)
                else:
                    sock.sendall(item)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed; read what it said
        return read_answer(sock)
    finally:
        sock.close()


# --------------------------------------------------------------------------- multipart by hand
def form_part(
    disposition: bytes | str,
    data: bytes = b"",
    content_type: bytes | str | None = None,
    extra_headers: Sequence[bytes] = (),
) -> bytes:
    """One part, head and data, without the boundary line: raw bytes in, raw bytes out."""
    disp = disposition if isinstance(disposition, bytes) else disposition.encode("utf-8")
    head = [b"Content-Disposition: " + disp]
    if content_type is not None:
        head.append(content_type if isinstance(content_type, bytes) else content_type.encode())
        head[-1] = b"Content-Type: " + head[-1]
    head += list(extra_headers)
    return b"\r\n".join(head) + b"\r\n\r\n" + data


def multipart(boundary: str | bytes, parts: Sequence[bytes], *, close: bool = True) -> bytes:
    """``--boundary`` + part for each part, then the closing delimiter (unless ``close``=False)."""
    bnd = boundary if isinstance(boundary, bytes) else boundary.encode("latin-1")
    out = b"".join(b"--" + bnd + b"\r\n" + part + b"\r\n" for part in parts)
    return out + (b"--" + bnd + b"--\r\n" if close else b"")
