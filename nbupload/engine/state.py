"""Task states, errors, snapshots and events: the engine's contract with its front ends.

Front ends (API, CLI, magics, panel) never touch a running task's internals: they read
immutable :class:`TaskSnapshot` values, delivered as :class:`TaskEvent` to subscribers,
and call the task's pause/resume/cancel/retry methods.

Theory of operation. Everything that decides which state may follow which, and which user
action is allowed in which state, lives in the two tables below (:data:`TRANSITIONS` and
:data:`ACTIONS`); nothing else in the package spells out a set of states. The task refuses a
transition the table does not list, and the panel's buttons, the magics and the CLI ask
:func:`can` instead of keeping state sets of their own. ``connecting`` covers the query
(uploader) or the position probe (WCS); ``paused`` and ``failed`` go back to ``queued`` on
resume/retry; ``done`` and ``cancelled`` are final. The diagram in ``docs/engine.md`` is
printed from :data:`TRANSITIONS` by :func:`describe_transitions` (a test keeps them equal).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from ..protocols.ranges import RangeSet

__all__ = [
    "ACTIONS",
    "ACTIVE_STATES",
    "FINAL_STATES",
    "FINISHED_STATES",
    "RUNNING_STATES",
    "SETTLED_STATES",
    "TRANSITIONS",
    "TaskError",
    "TaskEvent",
    "TaskSnapshot",
    "TaskState",
    "can",
    "describe_transitions",
]


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
#: States in which a task is on its way (a worker runs it, or it waits for one or for a backoff).
RUNNING_STATES = ACTIVE_STATES
#: States that end a run for good or until a retry: ``finished_at`` is set on entering them.
FINISHED_STATES = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED})
#: States in which a task is not moving and :meth:`Task.wait` returns.
SETTLED_STATES = frozenset({TaskState.PAUSED, TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED})

_Q, _C, _U = TaskState.QUEUED, TaskState.CONNECTING, TaskState.UPLOADING
_P, _D, _F, _X = TaskState.PAUSED, TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED

#: Every legal state change. A worker takes a queued task (queued -> connecting), learns what
#: the server holds and sends (-> uploading); a pause, a cancel or a failure can end any active
#: state; a task whose resume arrived while its run was ending goes back to queued; a queued
#: task can fail before it runs (a journaled task whose secrets are missing).
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    _Q: frozenset({_C, _P, _X, _F}),
    _C: frozenset({_U, _D, _P, _X, _F, _Q}),
    _U: frozenset({_C, _D, _P, _X, _F, _Q}),
    _P: frozenset({_Q, _X}),
    _F: frozenset({_Q, _X}),
    _D: frozenset(),
    _X: frozenset(),
}

#: Which user action is allowed in which state (the panel's buttons, ``%upload pause`` ...).
ACTIONS: dict[str, frozenset[TaskState]] = {
    "pause": frozenset({_Q, _C, _U}),
    "resume": frozenset({_P}),
    "cancel": frozenset({_Q, _C, _U, _P, _F}),
    "retry": frozenset({_F}),
}


def can(action: str, state: TaskState) -> bool:
    """Whether the user action ``action`` ("pause", "resume", "cancel", "retry") applies."""
    return state in ACTIONS[action]


def describe_transitions() -> str:
    """The transition table as text, one ``state -> next, next`` line per state (for the docs)."""
    order = list(TaskState)
    lines = []
    for state in order:
        nexts = [s.value for s in order if s in TRANSITIONS[state]]
        lines.append(f"{state.value:<10} -> {', '.join(nexts) if nexts else '(final)'}")
    return "\n".join(lines)


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
    progress bar can show ``acked + inflight`` moving smoothly between acknowledgements
    (with several streams it sums every request in flight). ``chunk_size`` is the chunk size
    the task uses now (it adapts to the link); ``retrying`` is true while the task waits out
    a backoff after a failure (``rate`` and ``eta`` are then cleared).
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
    chunk_size: int = 0
    retrying: bool = False
    #: grows with every snapshot a task takes in this process (0: a snapshot made elsewhere,
    #: unordered): of two snapshots of one task the larger ``seq`` is the newer, so a front end
    #: handed them out of order (two threads) keeps the newer one
    seq: int = 0

    def older_than(self, other: TaskSnapshot | None) -> bool:
        """True if ``other`` is a later snapshot of the same task (never for unordered ones)."""
        return other is not None and other.id == self.id and 0 < self.seq < other.seq

    @property
    def fraction(self) -> float:
        return (
            1.0
            if self.total == 0 and self.state is TaskState.DONE
            else (self.acked / self.total if self.total else 0.0)
        )


@dataclass(frozen=True)
class TaskEvent:
    """Delivered to subscribers. ``kind`` is ``"state"``, ``"progress"`` or ``"error"``
    (an error that will be retried; a final failure arrives as a ``"state"`` event)."""

    kind: str
    snapshot: TaskSnapshot
