"""nbupload: resumable uploads out of Jupyter notebooks.

``%load_ext nbupload`` in IPython gives the ``%upload`` magics and the upload panel;
``nbupload.upload(path, url)`` is the Python API; ``nbupload`` on the command line the
CLI; ``nbupload serve`` the reference server. Names are imported lazily, so importing
the package (for example to run the server) does not pull in the engine or ipywidgets.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time names load lazily (below)
    from .api import Task, get_engine, resume, tasks, upload
    from .append import (
        AppendConflict,
        AppendHandler,
        AppendHashMismatch,
        AppendStream,
        AppendStreamError,
        open_append,
    )
    from .batch import Batch, BatchError, BatchSnapshot, upload_many
    from .batchpaths import expand_paths
    from .engine import Engine, EngineConfig
    from .engine.state import TaskError, TaskSnapshot, TaskState
    from .errors import (
        CredentialsError,
        FileFieldError,
        NbuploadError,
        SourceChangedError,
        TaskLockedError,
        UploadCancelled,
        UploadError,
        UploadFailed,
        UploadPaused,
    )
    from .following import Follower, FollowError, follow
    from .server import start_server

# public name -> module that defines it (relative to this package)
_LAZY = {
    "AppendConflict": ".append",
    "AppendHandler": ".append",
    "AppendHashMismatch": ".append",
    "AppendStream": ".append",
    "AppendStreamError": ".append",
    "Batch": ".batch",
    "BatchError": ".batch",
    "BatchSnapshot": ".batch",
    "expand_paths": ".batchpaths",
    "follow": ".following",
    "Follower": ".following",
    "FollowError": ".following",
    "upload_many": ".batch",
    "open_append": ".append",
    "Task": ".api",
    "get_engine": ".api",
    "resume": ".api",
    "tasks": ".api",
    "upload": ".api",
    "Engine": ".engine",
    "EngineConfig": ".engine",
    "CredentialsError": ".errors",
    "FileFieldError": ".errors",
    "NbuploadError": ".errors",
    "SourceChangedError": ".errors",
    "TaskLockedError": ".errors",
    "UploadCancelled": ".errors",
    "UploadError": ".errors",
    "UploadFailed": ".errors",
    "UploadPaused": ".errors",
    "TaskError": ".engine.state",
    "TaskSnapshot": ".engine.state",
    "TaskState": ".engine.state",
    "start_server": ".server",
}

# The public surface, written out (not computed) so that tools read it; it is `_LAZY` plus the
# names defined here, and the "Public API" list in docs/index.md (tests/test_exported_members.py).
__all__ = [
    "AppendConflict",
    "AppendHandler",
    "AppendHashMismatch",
    "AppendStream",
    "AppendStreamError",
    "Batch",
    "BatchError",
    "BatchSnapshot",
    "CredentialsError",
    "Engine",
    "EngineConfig",
    "FileFieldError",
    "FollowError",
    "Follower",
    "NbuploadError",
    "SourceChangedError",
    "Task",
    "TaskError",
    "TaskLockedError",
    "TaskSnapshot",
    "TaskState",
    "UploadCancelled",
    "UploadError",
    "UploadFailed",
    "UploadPaused",
    "__version__",
    "expand_paths",
    "follow",
    "get_engine",
    "load_ipython_extension",
    "open_append",
    "resume",
    "start_server",
    "tasks",
    "unload_ipython_extension",
    "upload",
    "upload_many",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbupload' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbupload``."""
    from .ipython.extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext nbupload``."""
    from .ipython.extension import unload_ipython_extension as unload

    unload(ipython)
