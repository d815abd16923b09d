"""What a task uploads and how: the spec, kept in memory with its secrets.

The journal writes down the secret-free part (:class:`~nbupload.engine.journal.JournalRecord`);
the drivers read it through their :class:`~nbupload.engine.run.RunContext`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..protocols import PROTOCOLS
from .credentials import WcsCredentials
from .sources import FileIdentity

__all__ = ["PROTOCOLS", "SessionFile", "TaskSpec"]


@dataclass(frozen=True)
class SessionFile:
    """One file field of a multi-file uploader session (PROTOCOLS.md A7).

    ``size`` is fixed when the task starts; the task's bytes are the session's files laid
    end to end in this order, so its acknowledged ranges (and progress) are one range set
    over their sum. ``path``/``identity`` let another process open the file again and check
    it is still the same one (``None`` for in-memory sources).
    """

    name: str
    filename: str
    size: int
    path: str | None = None
    identity: FileIdentity | None = field(default=None, compare=False)
    mime: str | None = None

    @property
    def content_type(self) -> str:
        return self.mime or "application/octet-stream"


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
    #: a multi-file session: its file fields, in order (empty: one file, ``field_name``)
    files: tuple[SessionFile, ...] = ()
    #: this task's rate cap in bytes per second (all its streams together); ``None``: none
    limit_rate: float | None = None

    @property
    def content_type(self) -> str:
        return self.mime or "application/octet-stream"
