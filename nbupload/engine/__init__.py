"""The threaded upload engine (see ``docs/engine.md``).

Front ends use :class:`Engine` and :class:`EngineConfig`, read
:class:`~nbupload.engine.state.TaskSnapshot` values and subscribe to
:class:`~nbupload.engine.state.TaskEvent` values.
"""

from .config import EngineConfig
from .credentials import CredentialsError
from .engine import Engine, UnfinishedTask
from .errors import UploadCancelled, UploadError, UploadFailed, UploadPaused
from .journal import TaskLockedError
from .sources import SourceChangedError
from .state import TaskError, TaskEvent, TaskSnapshot, TaskState
from .task import Task

__all__ = [
    "CredentialsError",
    "Engine",
    "EngineConfig",
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
