"""Task states, errors, snapshots and events: the engine's contract with its front ends.

Front ends (API, CLI, magics, panel) never touch a running task's internals: they read
immutable :class:`TaskSnapshot` values, delivered as :class:`TaskEvent` to subscribers,
and call the task's pause/resume/cancel methods.

State machine::

    queued -> connecting -> uploading -> done
                 |  ^           |
                 v  |           v
               paused <------ (any active) ---> failed | cancelled

``connecting`` covers the query (uploader) or the position probe (WCS); ``paused`` can be
resumed (back to ``queued``); ``failed`` can be retried (back to ``queued``); ``done`` and
``cancelled`` are final.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from ..protocols.ranges import RangeSet

__all__ = ["ACTIVE_STATES", "FINAL_STATES", "TaskError", "TaskEvent", "TaskSnapshot", "TaskState"]


class TaskState(str, enum.Enum):
    QUEUED = "queued"
    CONNECTING = "connecting"
    UPLOADING = "uploading"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


ACTIVE_STATES = frozenset({TaskState.QUEUED, TaskState.CONNECTING, TaskState.UPLOADING})
FINAL_STATES = frozenset({TaskState.DONE, TaskState.CANCELLED})


@dataclass(frozen=True)
class TaskError:
    """Why a task failed, as the user should read it.

    ``code`` is the server's error code (uploader 4001-4008, or a WCS code string such as
    ``"409"``), ``status`` the HTTP status when there was one, ``message`` human text that
    never contains a secret. ``retryable`` tells whether trying again may succeed.
    """

    message: str
    code: int | str | None = None
    status: int | None = None
    retryable: bool = False

    def __str__(self) -> str:
        head = f"{self.code} " if self.code not in (None, "") else ""
        if self.status and str(self.code) != str(self.status):
            return f"{head}{self.message} (HTTP {self.status})"
        return f"{head}{self.message}"


@dataclass(frozen=True)
class TaskSnapshot:
    """An immutable view of a task at one instant.

    ``sent`` counts file bytes written to the network in this run (may go back on a
    retry); ``acked`` counts bytes the server confirmed holding and never goes backwards;
    ``ranges`` are the acknowledged byte ranges; ``rate`` is smoothed bytes/second of
    acknowledged progress and ``eta`` seconds left (None when unknown). ``inflight``
    counts file bytes written for the request now under way and not yet answered, so a
    progress bar can show ``acked + inflight`` moving smoothly between acknowledgements.
    """

    id: str
    name: str
    protocol: str
    url: str
    state: TaskState
    total: int
    sent: int = 0
    acked: int = 0
    ranges: RangeSet = field(default_factory=RangeSet)
    rate: float = 0.0
    eta: float | None = None
    error: TaskError | None = None
    result: Any = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    inflight: int = 0

    @property
    def fraction(self) -> float:
        return 1.0 if self.total == 0 and self.state is TaskState.DONE else (self.acked / self.total if self.total else 0.0)


@dataclass(frozen=True)
class TaskEvent:
    """Delivered to subscribers. ``kind`` is ``"state"``, ``"progress"`` or ``"error"``
    (an error that will be retried; a final failure arrives as a ``"state"`` event)."""

    kind: str
    snapshot: TaskSnapshot
