"""Exceptions inside the engine and the ones front ends see."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .state import TaskError

if TYPE_CHECKING:
    from .state import TaskSnapshot

__all__ = [
    "Interrupted",
    "StepFailed",
    "Stalled",
    "UploadCancelled",
    "UploadError",
    "UploadFailed",
    "UploadPaused",
]


class Interrupted(Exception):
    """Raised inside a running task when the user asked to pause or cancel."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Stalled(Exception):
    """No bytes moved on a request for ``stall_timeout`` seconds."""


class StepFailed(Exception):
    """One request failed. ``error.retryable`` decides whether the driver tries again;
    ``ambiguous`` means the server may have applied it (ask before resending)."""

    def __init__(self, error: TaskError, *, ambiguous: bool = False, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.ambiguous = ambiguous
        self.retry_after = retry_after


class UploadError(Exception):
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
