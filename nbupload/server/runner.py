"""Running the server in a background thread: :func:`start_server` and its handle."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .config import ServerConfig

__all__ = ["ServerHandle", "start_server"]

_START_TIMEOUT = 15.0
_SERVER_EXTRA = "the reference server needs its extra dependencies: pip install 'nbupload[server]'"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only for
    # sockets that say they are TCP. Without it an answer's head and body (two writes) meet
    # Nagle and the client's delayed ACK: a ~40 ms stall after every chunk.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class ServerHandle:
    """A running server: its URLs and root, its counters, and :meth:`stop`."""

    def __init__(self, server: Any, thread: threading.Thread, sock: socket.socket, app: Any, host: str,
                 root: Path, owns_root: bool) -> None:
        self._server = server
        self._thread = thread
        self._sock = sock
        self.app = app
        self.root = root
        self._owns_root = owns_root
        self.port: int = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        self.upload_url = self.url + "/upload"

    def __repr__(self) -> str:
        return f"<ServerHandle {self.url} root={str(self.root)!r}>"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stats(self) -> dict[str, Any]:
        """Counters per protocol: requests, file bytes, duplicate bytes, completed, errors."""
        return self.app.stats()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (idempotent); removes the root only if it was a fresh temp dir."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():  # connections still open: stop waiting for them
            self._server.force_exit = True
            self._thread.join(timeout)
        self._sock.close()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    root: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    max_file_size: int | None = None,
    max_request_size: int | None = None,
    credentials: Mapping[str, str] | None = None,
    deny_extensions: Iterable[str] = (),
    partial_ttl: float = 86400.0,
    throttle: float | None = None,
    body_timeout: float = 60.0,
    log_level: str = "warning",
) -> ServerHandle:
    """Start the reference server in a daemon thread; return once it accepts connections.

    ``root=None`` serves a fresh temp dir, removed by :meth:`ServerHandle.stop`. ``port=0``
    picks a free port (see ``handle.port``).
    """
    try:
        import python_multipart  # noqa: F401
        import uvicorn

        from .app import create_app
    except ImportError:
        raise RuntimeError(_SERVER_EXTRA) from None
    owns_root = root is None
    root_path = Path(tempfile.mkdtemp(prefix="nbupload-server-")) if root is None else Path(root)
    try:
        config = ServerConfig(
            root=root_path,
            max_file_size=max_file_size,
            max_request_size=max_request_size,
            credentials=credentials or {},
            deny_extensions=deny_extensions,
            partial_ttl=partial_ttl,
            throttle=throttle,
            body_timeout=body_timeout,
        )
        app = create_app(config)
        sock = _bind(host, port)
    except BaseException:
        if owns_root:
            shutil.rmtree(root_path, ignore_errors=True)
        raise
    uconfig = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=log_level in ("debug", "trace"),
        lifespan="on",
        # httptools when installed (the server extra), else h11; plain asyncio measured
        # faster than uvloop here, since disk writes go through the thread pool.
        http="auto",
        loop="asyncio",
        timeout_graceful_shutdown=3,
        server_header=False,
    )
    server = uvicorn.Server(uconfig)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="nbupload-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            if owns_root:
                shutil.rmtree(root_path, ignore_errors=True)
            raise RuntimeError(f"the upload server did not start (root {config.root})")
        time.sleep(0.01)
    return ServerHandle(server, thread, sock, app, host, config.root, owns_root)
