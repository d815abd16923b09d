"""The reference upload server: DCloud uploader protocol and WCS append, one ASGI app.

``start_server()`` runs it under uvicorn in a daemon thread (tests, demos, notebooks);
``nbupload serve`` runs it from the command line; ``create_app(ServerConfig(...))`` gives
the ASGI app for any other ASGI server. Importing this package needs neither uvicorn,
httpx nor ipywidgets; serving needs the ``server`` extra (uvicorn, python-multipart).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import ServerConfig
from .runner import ServerHandle, start_server

if TYPE_CHECKING:
    from .app import UploadServerApp

__all__ = ["ServerConfig", "ServerHandle", "create_app", "start_server"]


def create_app(config: ServerConfig) -> UploadServerApp:
    """The ASGI app serving ``config`` (needs python-multipart)."""
    from .app import create_app as _create

    return _create(config)
