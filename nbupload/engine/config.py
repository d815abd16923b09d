"""Engine settings: one dataclass, changed at run time through :meth:`Engine.configure`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_CHUNK_MAX", "DEFAULT_CHUNK_SIZE", "DEFAULT_STREAMS", "EngineConfig", "default_home"]

DEFAULT_CHUNK_SIZE = 4 << 20
DEFAULT_CHUNK_MAX = 64 << 20
DEFAULT_STREAMS = 4


def default_home() -> Path:
    """``$NBUPLOAD_HOME``, else the platform's per-user data directory."""
    env = os.environ.get("NBUPLOAD_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("nbupload"))


@dataclass(frozen=True)
class EngineConfig:
    """How the engine uploads. Every duration is in seconds.

    ``retries`` bounds consecutive failed attempts without progress (the counter resets
    whenever the server acknowledges new bytes) and ``retry_deadline`` bounds the time
    spent in such a failing streak. ``stall_timeout``: a request that moves no bytes for
    that long is abandoned and retried. ``journal_dir`` ``None`` means
    ``<NBUPLOAD_HOME>/tasks``; ``journal=False`` turns the journal off. Credentials given
    here are never written anywhere and never shown in a repr.

    ``streams``: chunks of one resumable upload in flight at once, each on its own
    keep-alive connection (WCS appends stay one at a time). ``chunk_size`` is where a task's
    chunks start; they grow up to ``chunk_max`` while waiting for answers dominates a
    request, and shrink after failures (see docs/engine.md, "Adaptive chunks").

    ``max_rate``: bytes per second all tasks and streams of the engine send at most, together
    (``None``: no cap); a task's own ``limit_rate`` applies as well (docs/engine.md, "Rate caps").
    """

    workers: int = 4
    chunk_size: int = DEFAULT_CHUNK_SIZE
    chunk_max: int = DEFAULT_CHUNK_MAX
    streams: int = DEFAULT_STREAMS
    retries: int = 8
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    retry_deadline: float = 900.0
    connect_timeout: float = 15.0
    read_timeout: float = 120.0
    write_timeout: float = 120.0
    pool_timeout: float = 300.0
    stall_timeout: float = 60.0
    progress_interval: float = 0.1
    piece_size: int = 64 << 10
    max_rate: float | None = None
    journal: bool = True
    journal_dir: str | os.PathLike[str] | None = None
    token_ttl: float = 3600.0
    user_agent: str | None = None
    verify: bool | str = True
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        if self.chunk_max < 1:
            raise ValueError("chunk_max must be positive")
        if not 1 <= self.streams <= 64:
            raise ValueError("streams must be between 1 and 64")
        if self.piece_size < 1:
            raise ValueError("piece_size must be positive")
        if self.max_rate is not None and not self.max_rate > 0:
            raise ValueError("max_rate must be positive (or None: no cap)")
        if self.retries < 0:
            raise ValueError("retries must not be negative")
        for name in ("connect_timeout", "read_timeout", "write_timeout", "pool_timeout", "stall_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    @property
    def tasks_dir(self) -> Path:
        return (
            Path(self.journal_dir).expanduser() if self.journal_dir is not None else default_home() / "tasks"
        )

    def with_changes(self, **changes: Any) -> EngineConfig:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(
                f"unknown engine setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return replace(self, **changes)
