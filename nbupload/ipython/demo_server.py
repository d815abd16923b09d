"""The embedded reference server of ``%upload server start``: its demo key pair and a quiet stop.

Stopping a server under running uploads used to print uvicorn's "timeout graceful shutdown
exceeded" and a ``CancelledError`` traceback into the cell: the server cancels request
handlers still reading bodies. :meth:`EmbeddedServer.stop` first pauses the uploads aimed at
it (they stay resumable, journaled) and waits briefly for them to settle, so their
connections close; what uvicorn still logs while shutting down is kept out of the cell.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

from ..engine.state import ACTIVE_STATES

__all__ = ["EmbeddedServer", "start_embedded"]

_QUIET_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio")


class EmbeddedServer:
    """The reference server started by ``%upload server start`` and its demo WCS key pair.

    The secret key lives only here (never printed, never in a repr).
    """

    def __init__(self, handle: Any, access_key: str, secret_key: str, *, persistent: bool = False) -> None:
        self.handle = handle
        self.access_key = access_key
        self._secret_key = secret_key
        #: its root was given (``--root``): what it received outlives it, so its uploads can resume
        self.persistent = persistent

    @property
    def root(self) -> str:
        return str(self.handle.root)

    def labels(self) -> dict[str, str]:
        """What the journal notes of an upload to this server (see ``docs/notebook.md``)."""
        out = {"server": "embedded"}
        if self.persistent:
            out["server_root"] = os.path.realpath(self.root)
        return out

    @property
    def secret_key(self) -> str:
        return self._secret_key

    @property
    def base_url(self) -> str:
        return str(self.handle.url).rstrip("/")

    @property
    def upload_url(self) -> str:
        return str(self.handle.upload_url)

    def serves(self, url: str) -> bool:
        url = str(url)
        return url == self.base_url or url.startswith(self.base_url + "/")

    def stop(self, engine: Any | None, *, settle: float = 5.0) -> list[str]:
        """Pause the engine's active uploads to this server, then stop it quietly.

        Returns the ids of the tasks paused (``%upload resume ID`` continues them once a
        server runs at the same URL again).
        """
        paused: list[str] = []
        if engine is not None:
            for task in engine.tasks():
                if task.state in ACTIVE_STATES and self.serves(task.url):
                    with contextlib.suppress(RuntimeError, ValueError):
                        task.pause()
                        paused.append(task.id)
            deadline = time.monotonic() + settle
            for task in engine.tasks():
                if task.id in paused:
                    with contextlib.suppress(TimeoutError):
                        task.wait(timeout=max(deadline - time.monotonic(), 0.01))
        with _quiet_logs():
            self.handle.stop()
        return paused

    def __repr__(self) -> str:
        return (
            f"EmbeddedServer(url={self.base_url!r}, root={str(self.handle.root)!r}, "
            f"access_key={self.access_key!r})"
        )


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """uvicorn's shutdown complaints (cancelled handlers) stay out of the notebook."""
    saved = []
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate, list(logger.handlers)))
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level, _propagate, _handlers in saved:
            logger.setLevel(level)


def start_embedded(**kwargs: Any) -> EmbeddedServer:
    """Start the reference server with a fresh demo key pair (``kwargs`` go to ``start_server``)."""
    from ..server import start_server

    access_key = "demo" + secrets.token_hex(4)
    secret_key = secrets.token_urlsafe(24)
    handle = start_server(credentials={access_key: secret_key}, **kwargs)
    return EmbeddedServer(handle, access_key, secret_key, persistent=kwargs.get("root") is not None)
