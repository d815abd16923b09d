"""The ASGI application: routing, lifespan, status and stats endpoints.

A plain ASGI callable rather than a framework app: the upload handlers need the raw
``receive`` stream (to parse multipart bodies as they arrive), and there are four routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from typing import Any

from .._version import __version__
from .config import ServerConfig
from .files_route import handle_read, is_read_path
from .http import Send, respond
from .state import ServerState
from .uploader_handler import handle_upload
from .wcs_handler import handle_append

__all__ = ["UploadServerApp", "app_from_environment", "create_app"]

log = logging.getLogger("nbupload.server")
_TOKEN_IN_QUERY = re.compile(r"(?i)((?:^|[?&])token=)[^&\s]*")


class RedactTokens(logging.Filter):
    """Masks ``token=...`` in access-log lines (uvicorn logs the path with its query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_QUERY.sub(r"\1***", a) if isinstance(a, str) and "token=" in a.lower() else a
                for a in record.args
            )
        return True


def _redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access.filters):
        access.addFilter(RedactTokens())


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class UploadServerApp:
    """The reference server as an ASGI app; ``state.stats`` holds its counters."""

    def __init__(self, config: ServerConfig) -> None:
        _redact_access_log()  # a ?token= in a URL must not reach the logs
        self.config = config
        self.state = ServerState(config)
        self._sweeper: asyncio.Task[None] | None = None

    def stats(self) -> dict[str, Any]:
        """This process's counters (``pid`` says which process of several answered)."""
        return {**self.state.stats.snapshot(), "pid": os.getpid()}

    def sweep(self) -> int:
        """Remove stale partial sessions and spooled appends now; how many were removed."""
        ttl = self.config.partial_ttl
        return self.state.sessions.sweep(ttl) + self.state.objects.sweep_spool(ttl)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval)
            try:
                self.sweep()
            except Exception:  # pragma: no cover - never let the sweeper die
                log.exception("sweeping stale partial uploads failed")

    def _start(self) -> None:
        self.state.open()
        self.sweep()

    async def _lifespan(self, receive: Any, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self._start()
                except Exception as exc:  # noqa: BLE001 - ASGI lifespan: failure is a message
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._sweeper is not None:
                    self._sweeper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._sweeper
                self.state.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if self.state.root_fd < 0:  # run without lifespan events
            self._start()
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            if path in ("/upload", "/upload/"):
                if method == "POST":
                    await handle_upload(self.state, scope, receive, send)
                else:
                    await self._status(send, method)
            elif path.startswith("/append/"):
                if method != "POST":
                    await respond(send, 405, _json({"code": "405", "message": "use POST"}), {"allow": "POST"})
                else:
                    await handle_append(self.state, scope, receive, send)
            elif is_read_path(path):  # GET/HEAD /files/<path>, /wcs/<bucket>/<key> (files_route.py)
                await handle_read(self.state, scope, send)
            elif path == "/_nbupload/stats" and method in ("GET", "HEAD"):
                await respond(send, 200, _json(self.stats()))
            elif path == "/" and method in ("GET", "HEAD"):
                await self._status(send, method)
            else:
                # not the uploader route: answered in WCS's shape (PROTOCOLS.md B6)
                await respond(send, 404, _json({"code": "404", "message": f"no route {path}"}))
        except Exception:
            log.exception("unexpected error answering %s %s", method, path)
            with contextlib.suppress(Exception):
                if path in ("/upload", "/upload/"):
                    body = _json({"result": "ERROR", "code": 500, "message": "internal server error"})
                else:
                    body = _json({"code": "500", "message": "internal server error"})
                await respond(send, 500, body, close=True)

    async def _status(self, send: Send, method: str) -> None:
        body = _json(
            {
                "server": "nbupload",
                "version": __version__,
                "protocols": {"uploader": "POST /upload", "wcs": "POST /append/<position>"},
                "stats": "/_nbupload/stats",
            }
        )
        await respond(send, 200 if method in ("GET", "HEAD") else 405, body)


def create_app(config: ServerConfig) -> UploadServerApp:
    """The ASGI app serving ``config`` (run it with any ASGI server, e.g. uvicorn)."""
    return UploadServerApp(config)


def app_from_environment() -> UploadServerApp:
    """The app factory the worker processes of ``nbupload serve --workers N`` import
    (``uvicorn --factory nbupload.server.app:app_from_environment``): settings from the
    private JSON file named by ``$NBUPLOAD_SERVER_CONFIG``."""
    from .runner import CONFIG_ENV, load_config_file

    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} is not set: it names the server's settings file")
    return UploadServerApp(load_config_file(path))
