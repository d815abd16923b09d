"""Every exception nbupload raises to its callers, under one root.

One root lets a caller write ``except nbupload.NbuploadError`` around any public call
(httpx's ``_exceptions.py`` is the model). Classes keep the builtin base they had before
(``ValueError``, ``RuntimeError``, ``OSError``) so existing ``except ValueError`` code still
catches them::

    NbuploadError
    ├── UploadError                 Task.wait(raise_on_error=True): the task did not finish
    │   ├── UploadFailed            failed; .error has the server's code and message
    │   ├── UploadCancelled         cancelled
    │   └── UploadPaused            paused (it can be resumed)
    ├── CredentialsError (ValueError)     WCS credentials missing or unusable
    ├── FileFieldError (ValueError)       a multi-file session's fields are unusable
    ├── TaskLockedError (RuntimeError)    another process is running this task
    ├── SourceChangedError          the file is not the one the task started with
    ├── IllegalTransition (RuntimeError)  a bug: a state change the table forbids
    ├── BatchError                  Batch.wait(raise_on_error=True): some files failed (batch/)
    ├── AppendStreamError (OSError) a WCS append stream failed (append.py); .code, .status
    │   ├── AppendConflict          someone else appended
    │   ├── AppendHashMismatch      the server's hash differs from what was written
    │   └── FollowError             a followed file was replaced or truncated (following.py)
    └── EngineError                 raised inside a running task, never seen by callers
        ├── Interrupted             pause or cancel was asked
        ├── Stalled                 no bytes moved for stall_timeout
        └── StepFailed              one request failed (.error says whether to retry)

This module imports nothing above :mod:`nbupload.engine.state`, so every layer can use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine.state import TaskError, TaskSnapshot

__all__ = [
    "CredentialsError",
    "EngineError",
    "FileFieldError",
    "IllegalTransition",
    "Interrupted",
    "NbuploadError",
    "SourceChangedError",
    "Stalled",
    "StepFailed",
    "TaskLockedError",
    "UploadCancelled",
    "UploadError",
    "UploadFailed",
    "UploadPaused",
]


class NbuploadError(Exception):
    """The root of every nbupload exception."""


class UploadError(NbuploadError):
    """Raised by ``Task.wait(raise_on_error=True)`` when the task did not finish."""

    def __init__(self, message: str, snapshot: TaskSnapshot) -> None:
        super().__init__(message)
        self.snapshot = snapshot

    @property
    def error(self) -> TaskError | None:
        return self.snapshot.error


class UploadFailed(UploadError):
    """The task failed; ``.error`` holds the server's code and message."""


class UploadCancelled(UploadError):
    """The task was cancelled."""


class UploadPaused(UploadError):
    """The task was paused before it finished (it can be resumed)."""


class CredentialsError(NbuploadError, ValueError):
    """Missing or unusable WCS credentials (the message says which option to give)."""


class FileFieldError(NbuploadError, ValueError):
    """The files of a multi-file session cannot be uploaded as given: a duplicate or unusable
    field name, a missing file, or an option that does not go with several files."""


class TaskLockedError(NbuploadError, RuntimeError):
    """Another process is running this task."""


class SourceChangedError(NbuploadError):
    """The file on disk is not the one the task started uploading."""


class IllegalTransition(NbuploadError, RuntimeError):
    """A task state change that :data:`nbupload.engine.state.TRANSITIONS` does not allow (a bug)."""


class EngineError(NbuploadError):
    """Raised inside a running task; the engine turns it into a task state."""


class Interrupted(EngineError):
    """Raised inside a running task when the user asked to pause or cancel."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Stalled(EngineError):
    """No bytes moved on a request for ``stall_timeout`` seconds."""


class StepFailed(EngineError):
    """One request failed. ``error.retryable`` decides whether the driver tries again;
    ``retry_after`` is the server's ``Retry-After`` in seconds.

    Whether the request may have landed (an answer lost or cut) is not told apart: after any
    failure the driver asks the server what it holds before sending again, never resends on
    the strength of the failure alone."""

    def __init__(self, error: TaskError, *, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
