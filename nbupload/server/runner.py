"""Running the server in a background thread: :func:`start_server` and its handle."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl as _ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .config import ServerConfig

__all__ = ["CONFIG_ENV", "ServerHandle", "http_protocol", "load_config_file", "run_workers", "start_server"]

#: Environment variable naming the settings file the worker processes of
#: :func:`run_workers` read (``nbupload.server.app:app_from_environment``).
CONFIG_ENV = "NBUPLOAD_SERVER_CONFIG"

_START_TIMEOUT = 15.0
_SERVER_EXTRA = "the reference server needs its extra dependencies: pip install 'nbupload[server]'"


def http_protocol() -> Any:
    """The HTTP protocol given to uvicorn: httptools with a lingering close (see
    :mod:`.linger`) when httptools is installed (the server extra), else uvicorn's h11."""
    try:
        from .linger import LingeringHttpToolsProtocol
    except ImportError:
        return "h11"
    return LingeringHttpToolsProtocol


def _uvicorn_config(app: Any, log_level: str, ssl: _ssl.SSLContext | None, **extra: Any) -> Any:
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=log_level in ("debug", "trace"),
        lifespan="on",
        # httptools when installed (the server extra), else h11; plain asyncio measured
        # faster than uvloop here, since disk writes go through the thread pool.
        http=http_protocol(),
        loop="asyncio",
        timeout_graceful_shutdown=3,
        server_header=False,
        **extra,
    )
    return config


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

    def __init__(
        self,
        server: Any,
        thread: threading.Thread,
        sock: socket.socket,
        app: Any,
        host: str,
        root: Path,
        owns_root: bool,
        *,
        https: bool = False,
    ) -> None:
        self._server = server
        self._thread = thread
        self._sock = sock
        self.app = app
        self.root = root
        self._owns_root = owns_root
        self.port: int = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{'https' if https else 'http'}://{shown}:{self.port}"
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
    require_token: bool = False,
    ssl: _ssl.SSLContext | None = None,
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
    log_level: str = "warning",
) -> ServerHandle:
    """Start the reference server in a daemon thread; return once it accepts connections.

    ``root=None`` serves a fresh temp dir, removed by :meth:`ServerHandle.stop`. ``port=0``
    picks a free port (see ``handle.port``). HTTPS: give ``ssl=`` (a server
    :class:`ssl.SSLContext`) or ``certfile=`` (and ``keyfile=`` unless the key is in it);
    the handle's URLs then say ``https``. ``require_token=True`` refuses ``/upload`` requests
    without a valid upload token (PROTOCOLS.md A9; signed with one of ``credentials``).
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
            require_token=require_token,
        )
        if ssl is None and certfile is not None:
            ssl = server_ssl_context(certfile, keyfile)
        app = create_app(config)
        sock = _bind(host, port)
    except BaseException:
        if owns_root:
            shutil.rmtree(root_path, ignore_errors=True)
        raise
    uconfig = _uvicorn_config(app, log_level, ssl)
    if ssl is not None:
        uconfig.load()
        uconfig.ssl = ssl  # uvicorn builds its context from files; a given context replaces it
    server = uvicorn.Server(uconfig)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="nbupload-server", daemon=True
    )
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
    return ServerHandle(server, thread, sock, app, host, config.root, owns_root, https=ssl is not None)


def server_ssl_context(certfile: str | Path, keyfile: str | Path | None = None) -> _ssl.SSLContext:
    """A TLS server context from a PEM certificate chain and key (``OSError``/``SSLError`` if bad)."""
    context = _ssl.create_default_context(_ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certfile), None if keyfile is None else str(keyfile))
    return context


def _config_file(config: ServerConfig) -> str:
    """The settings as a private (0600) JSON file for the worker processes; its path."""
    fd, path = tempfile.mkstemp(prefix="nbupload-serve-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, json.dumps(config.to_json()).encode("utf-8"))
    finally:
        os.close(fd)
    return path


def load_config_file(path: str) -> ServerConfig:
    """The settings :func:`run_workers` wrote for its workers."""
    with open(path, encoding="utf-8") as f:
        return ServerConfig.from_json(json.load(f))


def run_workers(
    config: ServerConfig,
    host: str,
    port: int,
    workers: int,
    *,
    certfile: str | None = None,
    keyfile: str | None = None,
    log_level: str = "warning",
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve with ``workers`` processes on one listening socket, until SIGINT or SIGTERM.

    The parent binds the socket and supervises (uvicorn's :class:`Multiprocess`: a worker
    that dies is replaced); each worker builds the app with the factory
    ``nbupload.server.app:app_from_environment`` from a private settings file. The workers
    share state only through the root (see :mod:`.locks`). ``on_ready`` gets the URL once
    the socket listens (connections wait in its backlog until a worker takes them).
    """
    from uvicorn.supervisors import Multiprocess

    if certfile is not None:
        server_ssl_context(certfile, keyfile)  # a bad certificate fails here, with a clear error
    config.root.mkdir(parents=True, exist_ok=True)
    sock = _bind(host, port)
    path = _config_file(config)
    previous = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = path  # the spawned workers inherit it
    try:
        # a worker answers the supervisor's health pings from a thread; on a loaded machine that
        # can take seconds, and a worker wrongly judged hung is killed with its uploads
        extra: dict[str, Any] = {"factory": True, "workers": workers, "timeout_worker_healthcheck": 30}
        if certfile is not None:
            extra.update(ssl_certfile=str(certfile), ssl_keyfile=None if keyfile is None else str(keyfile))
        uconfig = _uvicorn_config("nbupload.server.app:app_from_environment", log_level, None, **extra)
        if on_ready is not None:
            shown = f"[{host}]" if ":" in host else host
            on_ready(f"{'https' if certfile else 'http'}://{shown}:{sock.getsockname()[1]}")
        Multiprocess(uconfig, sockets=[sock]).run()
    finally:
        if previous is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = previous
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
