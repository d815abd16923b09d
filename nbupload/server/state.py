"""What every request handler shares: settings, open root, stores, counters, throttle."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .body import Throttle
from .config import ServerConfig
from .objects import ObjectStore
from .sessions import SessionStore
from .stats import Stats

__all__ = ["ServerState"]


@dataclass
class ServerState:
    config: ServerConfig
    stats: Stats = field(default_factory=Stats)
    root_fd: int = -1
    sessions: SessionStore = field(init=False)
    objects: ObjectStore = field(init=False)
    throttle: Throttle | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.sessions = SessionStore(self.config.root)
        self.objects = ObjectStore(self.config.root)
        if self.config.throttle:
            self.throttle = Throttle(self.config.throttle)

    def open(self) -> None:
        """Create and open the root (idempotent); the stores work relative to its fd."""
        if self.root_fd >= 0:
            return
        self.config.root.mkdir(parents=True, exist_ok=True)
        self.root_fd = os.open(self.config.root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        self.objects.root_fd = self.root_fd

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1
