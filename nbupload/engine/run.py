"""What a driver sees of one run of a task: a :class:`RunContext` and a :class:`RunHandle`.

Drivers (:mod:`.drivers`) never see the task or the engine. The context holds what the run
works with (settings, source, HTTP clients, backoff); the handle is how the run reports
progress and learns about pause or cancel. The distinctions that matter:

- ``add_sent(n)``: ``n`` file bytes went into the network for a request not yet answered
  (they count as *in flight*); ``end_request(n)``: that request ended (answered or failed),
  its ``n`` bytes leave the in-flight count.
- ``acknowledge(ranges)``: the server confirmed holding ``ranges``; merged into what is
  known, journaled, never goes backwards. ``set_acked_exact(ranges)``: what the server
  reported at (re)start.
- ``check()``: raises :class:`~nbupload.errors.Interrupted` once pause or cancel was asked;
  ``on_abort(fn)``: ``fn`` runs (from the user's thread) on pause or cancel, to cut a
  request's connection at once instead of waiting for the next check.
- ``driver_state`` / ``set_driver_state(state, save=...)``: what the driver learnt that a
  later run needs (:class:`~nbupload.engine.driverstate.DriverState`, frozen: the driver
  hands back a changed copy); journaled with the task, at once when ``save`` is true.
- ``report_error(error)``: a failure that will be retried (rate and ETA are cleared until the
  next acknowledgement); ``sleep(s)``: back off, waking at once for pause or cancel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ..errors import EngineError
from ..protocols.multipart import Source
from ..protocols.ranges import RangeSet
from .config import EngineConfig
from .driverstate import DriverState
from .ratelimit import Throttle
from .retry import Backoff
from .spec import TaskSpec
from .state import TaskError
from .transport import ClientPool

__all__ = ["Reschedule", "RunContext", "RunHandle"]


class Reschedule(EngineError):
    """The run gives its worker back and asks to be queued again after ``delay`` seconds
    (a task waiting out a backoff must not hold a worker others could use)."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"try again in {delay:.1f} s")
        self.delay = delay


class RunHandle(Protocol):
    """The progress handle of one run (see the module docstring)."""

    #: driver state carried across runs in memory only (e.g. the WCS etag state)
    memo: dict[str, Any]

    @property
    def driver_state(self) -> DriverState: ...

    def set_driver_state(self, state: DriverState, *, save: bool = False, durable: bool = True) -> None: ...

    @property
    def ranges(self) -> RangeSet: ...

    def check(self) -> None: ...

    def sleep(self, seconds: float) -> None: ...

    def on_abort(self, abort: Callable[[], None]) -> Callable[[], None]: ...

    def add_sent(self, n: int) -> None: ...

    def end_request(self, n: int) -> None: ...

    def acknowledge(self, ranges: RangeSet) -> None: ...

    def set_acked_exact(self, ranges: RangeSet) -> None: ...

    def report_error(self, error: TaskError) -> None: ...

    def note_attempt(self) -> None: ...

    def set_state_uploading(self) -> None: ...

    def set_chunk_size(self, size: int) -> None: ...

    def save(self, durable: bool = True) -> None: ...

    def save_later(self) -> None:
        """Journal the task soon, off this thread, not durably (see :mod:`.saver`)."""
        ...


@dataclass
class RunContext:
    """What one run of a task works with.

    ``check_source`` raises :class:`~nbupload.errors.SourceChangedError` once the file
    differs from when the task started; ``backoff`` outlives the run when the task was
    rescheduled (its failing streak goes on).
    """

    spec: TaskSpec
    name: str
    total: int
    config: EngineConfig
    source: Source
    check_source: Callable[[], None]
    clients: ClientPool
    timeout: httpx.Timeout
    backoff: Backoff
    #: the rate caps the run's requests pay (the task's and the engine's); ``None``: no cap
    throttle: Throttle | None = None
