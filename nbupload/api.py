"""The Python API: ``nbupload.upload(path, url)`` and friends, on a process-wide engine.

Every function takes ``engine=`` to use another :class:`~nbupload.engine.Engine`; by
default one is created lazily (settings from :class:`~nbupload.engine.EngineConfig`
defaults, journal under ``$NBUPLOAD_HOME``) and paused cleanly at interpreter exit so
its journal entries can be resumed later.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Mapping
from typing import Any

from .engine import Engine, EngineConfig
from .engine.task import Task

__all__ = ["Engine", "EngineConfig", "Task", "get_engine", "resume", "tasks", "upload"]

_default: Engine | None = None
_default_lock = threading.Lock()


def get_engine() -> Engine:
    """The process-wide default engine, created on first use."""
    global _default  # noqa: PLW0603 - the one process-wide default engine, behind its lock
    with _default_lock:
        if _default is None or _default.closed:
            _default = Engine(EngineConfig())
            atexit.register(_pause_at_exit, _default)
        return _default


def _pause_at_exit(engine: Engine) -> None:
    """Interpreter exit: pause what still runs (the journal keeps it) and say so."""
    from .engine.state import RUNNING_STATES

    running = [t for t in engine.tasks() if t.state in RUNNING_STATES]
    engine.shutdown(True, 5.0)
    kept = [t.id for t in running if t.persistent]
    if kept:
        import sys

        print(
            f"nbupload: {len(kept)} upload(s) paused at exit; resume with: nbupload resume {' '.join(kept)}",
            file=sys.stderr,
        )


def upload(
    source: Any,
    url: str,
    *,
    protocol: str = "uploader",
    chunk_size: int | None = None,
    name: str = "file",
    filename: str | None = None,
    fields: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    key: str | None = None,
    token: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    scope: str | None = None,
    mime: str | None = None,
    position: int = 0,
    streams: int | None = None,
    chunk_max: int | None = None,
    limit_rate: float | None = None,
    wait: bool = False,
    verify: bool | str | None = None,
    engine: Engine | None = None,
) -> Task:
    """Upload ``source`` (a path, bytes-like, binary file object, or anything with ``.size``
    and ``.pread(n, offset)``) to ``url``.

    Returns the :class:`Task` at once; with ``wait=True`` returns it once finished and
    raises :class:`~nbupload.engine.UploadFailed` (with the server's code and message)
    if it failed. ``protocol`` is ``"uploader"`` (resumable, plain fallback),
    ``"plain"`` or ``"wcs-append"`` (``url`` is the upload domain; give ``token=`` or
    ``access_key=`` + ``secret_key=`` + ``scope=``, and ``key=`` unless the scope names it).
    For a file that grew since an earlier WCS upload, ``position=`` (the size the object has)
    appends just the new bytes. ``chunk_size`` is where chunks start (default: the engine's
    setting; they adapt to the link); ``streams`` how many chunks of this file are in flight
    at once (default: the engine's ``streams``, 4); ``chunk_max`` the largest its chunks grow
    to (default: the engine's ``chunk_max``; equal to ``chunk_size``: fixed chunks);
    ``limit_rate`` caps this upload's rate in bytes per second, all its streams together (the
    engine's ``max_rate``, ``EngineConfig.max_rate``, caps all uploads together).

    A mapping of form field names to files (``{"photo": "a.jpg", "doc": "b.pdf"}``) is one
    uploader session holding every file (PROTOCOLS.md A7; ``fields=`` go with each request):
    one task, resumed as a whole; its result's ``"files"`` gives each field's outcome. The
    field names must be unique and usable form names, and ``name``, ``filename``, ``key``,
    ``position`` and ``protocol="wcs-append"`` do not go with it
    (:class:`~nbupload.errors.FileFieldError`).

    A list or tuple of paths, a folder, or a glob is uploaded as one batch: this returns a
    :class:`~nbupload.batch.Batch` (see :func:`~nbupload.batch.upload_many`).

    ``verify`` (HTTPS: ``True``, ``False`` or a CA bundle path)
    sets the engine's certificate check (``EngineConfig.verify``) for this and later uploads.
    """
    if _is_batch(source):  # a list, a folder or a glob: nbupload.upload_many (a Batch, not a Task)
        from .batch import upload_many

        if filename or key or position:
            raise ValueError("a batch names each file itself: use nbupload.upload_many(..., prefix=...)")
        return upload_many(
            source,
            url,
            protocol=protocol,
            chunk_size=chunk_size,
            name=name,
            fields=fields,  # type: ignore[return-value]
            headers=headers,
            token=token,
            access_key=access_key,
            secret_key=secret_key,
            scope=scope,
            mime=mime,
            limit_rate=limit_rate,
            wait=wait,
            engine=engine,
        )
    eng = engine or get_engine()
    if verify is not None and eng.config.verify != verify:
        eng.configure(verify=verify)
    task = eng.submit(
        source,
        url,
        protocol=protocol,
        chunk_size=chunk_size,
        name=name,
        filename=filename,
        fields=fields,
        headers=headers,
        key=key,
        token=token,
        access_key=access_key,
        secret_key=secret_key,
        scope=scope,
        mime=mime,
        position=position,
        streams=streams,
        chunk_max=chunk_max,
        limit_rate=limit_rate,
    )
    if wait:
        task.wait(raise_on_error=True)
    return task


def _is_batch(source: Any) -> bool:
    """A list/tuple of paths, an existing folder, or a glob that is not an existing file."""
    import os

    if isinstance(source, (list, tuple)):
        return True
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if os.path.isfile(text):  # the common case, answered without importing the batch code
            return False
        if os.path.isdir(text):
            return True
        from .batchpaths import has_magic

        return has_magic(text) and not os.path.lexists(text)
    return False


def tasks(engine: Engine | None = None) -> list[Task]:
    """The tasks of this process (running, paused, failed, finished)."""
    return (engine or get_engine()).tasks()


def resume(task_id: str | None = None, *, engine: Engine | None = None, **credentials: Any) -> list[Task]:
    """Resume one task or, with no id, every unfinished one (paused or failed here, and
    journal entries of earlier processes). Credentials (``token=``, ``access_key=``,
    ``secret_key=``) and secret ``headers=``/``fields=`` may be given again."""
    return (engine or get_engine()).resume(task_id, **credentials)
