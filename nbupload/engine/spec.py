"""What a task uploads and how: the spec, kept in memory with its secrets.

The journal writes down the secret-free part (:class:`~nbupload.engine.journal.JournalRecord`);
the drivers read it through their :class:`~nbupload.engine.run.RunContext`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..protocols import PROTOCOLS
from .credentials import WcsCredentials

__all__ = ["PROTOCOLS", "TaskSpec"]


@dataclass
class TaskSpec:
    """Everything a task needs to (re)start. Secret values live only here, in memory."""

    protocol: str
    url: str
    filename: str
    field_name: str = "file"
    fields: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    key: str | None = None
    mime: str | None = None
    chunk_size: int = 4 << 20
    boundary: str = ""
    credentials: WcsCredentials | None = field(default=None, repr=False)
    #: chunks in flight at once; ``None``: the engine's ``streams`` setting
    streams: int | None = None
    #: the largest a chunk may grow to; ``None``: the engine's ``chunk_max`` setting
    chunk_max: int | None = None
    #: this task's rate cap in bytes per second (all its streams together); ``None``: none
    limit_rate: float | None = None

    @property
    def content_type(self) -> str:
        return self.mime or "application/octet-stream"
