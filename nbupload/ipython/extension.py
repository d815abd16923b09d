"""``%load_ext nbupload``: one :class:`~nbupload.ipython.session.UploadSession` per shell.

``%unload_ext nbupload`` undoes everything the session added (magics, configurable, engine
subscription, pump thread, widgets) and stops the embedded server, pausing the uploads to it.
``%reload_ext nbupload`` is an unload followed by a load; tasks belong to the engine and keep
running across it, and so do the embedded server and the rows already displayed: the new
session adopts them (re-attached, still live).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from .session import Handover, UploadSession

__all__ = ["UploadSession", "current_session", "load_ipython_extension", "unload_ipython_extension"]

_SESSIONS: dict[int, UploadSession] = {}
#: shell id -> what a session unloaded by ``%reload_ext`` left for the next one
_HANDOVERS: dict[int, Handover] = {}
_LOCK = threading.Lock()


def current_session(shell: Any) -> UploadSession | None:
    return _SESSIONS.get(id(shell))


def _reloading() -> bool:
    """Whether this unload is the first half of IPython's ``%reload_ext`` (its
    ``ExtensionManager.reload_extension`` is on the stack): keep what the next load adopts."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "reload_extension" and "extensions" in frame.f_code.co_filename:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def load_ipython_extension(ipython: Any) -> None:
    from .magics import UploadMagics

    with _LOCK:
        if id(ipython) in _SESSIONS:  # a second %load_ext is a no-op, as IPython's own is
            return
        handover = _HANDOVERS.pop(id(ipython), None)
        session = UploadSession(ipython, handover=handover)
        _SESSIONS[id(ipython)] = session
    try:
        session.open(UploadMagics(ipython, session))
    except BaseException:
        with _LOCK:
            _SESSIONS.pop(id(ipython), None)
        session.close()
        raise
    if handover is not None:
        running = sum(
            1 for t in session.engine.tasks() if t.state.value in ("queued", "connecting", "uploading")
        )
        kept = f"; the demo server at {session.server.base_url} kept running" if session.server else ""
        print(
            f"nbupload reloaded: {running} running upload{'s' if running != 1 else ''} kept going{kept}, "
            f"{len(session.rows)} displayed row{'s' if len(session.rows) != 1 else ''} re-attached"
        )


def unload_ipython_extension(ipython: Any) -> None:
    with _LOCK:
        session = _SESSIONS.pop(id(ipython), None)
    if session is None:
        return
    if _reloading():
        _HANDOVERS[id(ipython)] = session.hand_over()
        return
    paused = session.close()
    if paused is not None:
        said = (
            f", pausing {len(paused)} upload{'s' if len(paused) != 1 else ''} to it ({', '.join(paused)})"
            if paused
            else ""
        )
        print(f"nbupload unloaded: stopped the demo server{said}")
