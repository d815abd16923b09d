"""The threaded upload engine (see ``docs/engine.md``).

Front ends use :class:`Engine` and :class:`EngineConfig`, read
:class:`~nbupload.engine.state.TaskSnapshot` values and subscribe to
:class:`~nbupload.engine.state.TaskEvent` values.
"""

from ..errors import (
    CredentialsError,
    NbuploadError,
    SourceChangedError,
    TaskLockedError,
    UploadCancelled,
    UploadError,
    UploadFailed,
    UploadPaused,
)
from .config import EngineConfig
from .engine import Engine, UnfinishedTask
from .state import TaskError, TaskEvent, TaskSnapshot, TaskState
from .task import Task

__all__ = [
    "CredentialsError",
    "Engine",
    "EngineConfig",
    "NbuploadError",
    "SourceChangedError",
    "Task",
    "TaskError",
    "TaskEvent",
    "TaskLockedError",
    "TaskSnapshot",
    "TaskState",
    "UnfinishedTask",
    "UploadCancelled",
    "UploadError",
    "UploadFailed",
    "UploadPaused",
]
