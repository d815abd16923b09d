"""What a batch reports: its aggregate at one instant, its failed files, and its exception.

Plain values, shared by the batch itself (:mod:`nbupload.batch.core`) and the front ends that
print or show them (the CLI's bar, ``%upload``, the panel's batch row), so that they all
describe a batch in the same words.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import NbuploadError

__all__ = ["BatchError", "BatchFailure", "BatchSnapshot"]


@dataclass(frozen=True)
class BatchFailure:
    """One file that failed: its name, the server's (or nbupload's) code, HTTP status, message."""

    name: str
    code: str | None
    status: int | None
    message: str

    def __str__(self) -> str:
        code = f" [{self.code}]" if self.code else ""
        return f"{self.name}{code}: {self.message}"


@dataclass(frozen=True)
class BatchSnapshot:
    """The batch at one instant. ``state``: ``running``, ``paused``, ``done`` (every file
    uploaded or skipped), ``failed`` (settled, some failed), ``cancelled``."""

    state: str
    files_total: int
    files_done: int
    files_skipped: int
    files_failed: int
    files_active: int
    files_waiting: int
    bytes_total: int
    bytes_done: int
    rate: float
    eta: float | None
    failures: tuple[BatchFailure, ...]
    files_cancelled: int = 0

    @property
    def settled(self) -> bool:
        return self.state in ("paused", "done", "failed", "cancelled")

    def report(self) -> list[str]:
        """What the front ends print when a batch settles (the CLI and ``%upload`` alike):
        the :meth:`describe` line, then one line per failure with its server code."""
        return [self.describe(), *(f"failed: {f}" for f in self.failures)]

    def describe(self) -> str:
        """One line: ``12/40 files (3 skipped, 1 failed), 3.1 MiB/9.0 MiB, 2.0 MiB/s``."""
        from ..units import format_size

        extra = []
        if self.files_skipped:
            extra.append(f"{self.files_skipped} skipped")
        if self.files_failed:
            extra.append(f"{self.files_failed} failed")
        if self.files_cancelled:
            extra.append(f"{self.files_cancelled} cancelled")
        more = f" ({', '.join(extra)})" if extra else ""
        done = self.files_done + self.files_skipped
        text = (
            f"{done}/{self.files_total} files{more}, {format_size(self.bytes_done)}/"
            f"{format_size(self.bytes_total)}"
        )
        if self.state == "running" and self.rate:
            text += f", {format_size(self.rate)}/s"
        return f"{text} [{self.state}]"


class BatchError(NbuploadError):
    """Raised by ``Batch.wait(raise_on_error=True)``; ``.snapshot.failures`` lists the files."""

    def __init__(self, message: str, snapshot: BatchSnapshot) -> None:
        super().__init__(message)
        self.snapshot = snapshot
