"""The reference server's settings, as one value both the CLI and the embedding API fill."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .names import normalize_extensions

__all__ = ["ServerConfig"]


@dataclass
class ServerConfig:
    """Where files go and what the server accepts.

    Sizes are bytes (``None``: no limit); ``throttle`` is the total rate, in bytes per second,
    at which the server reads request bodies (``None``: as fast as they come);
    ``partial_ttl`` is how long, in seconds, an untouched partial session is kept;
    ``body_timeout`` how long a request body may send nothing before it is given up as cut
    short (a dead link must not hold a WCS object's lock, or a session, for ever).
    ``require_token`` refuses ``/upload`` requests without a valid upload token signed with
    one of ``credentials`` (PROTOCOLS.md A9).
    ``credentials`` maps WCS access keys to secret keys and never appears in a repr.
    """

    root: Path
    max_file_size: int | None = None
    max_request_size: int | None = None
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    deny_extensions: Iterable[str] = ()
    partial_ttl: float = 86400.0
    throttle: float | None = None
    expiry_interval: float | None = None
    body_timeout: float = 60.0
    require_token: bool = False

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser().resolve()
        self.deny_extensions = normalize_extensions(self.deny_extensions)
        self.credentials = dict(self.credentials or {})
        for name in ("max_file_size", "max_request_size"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative")
        if self.partial_ttl <= 0:
            raise ValueError("partial_ttl must be positive")
        if self.body_timeout <= 0:
            raise ValueError("body_timeout must be positive")
        if self.throttle is not None and self.throttle <= 0:
            raise ValueError("throttle must be a positive rate in bytes per second")

    def to_json(self) -> dict[str, Any]:
        """Every setting as JSON values (secrets included: write it only to a private file)."""
        return {
            "root": str(self.root),
            "max_file_size": self.max_file_size,
            "max_request_size": self.max_request_size,
            "credentials": dict(self.credentials),
            "deny_extensions": list(self.deny_extensions),
            "partial_ttl": self.partial_ttl,
            "throttle": self.throttle,
            "expiry_interval": self.expiry_interval,
            "body_timeout": self.body_timeout,
            "require_token": self.require_token,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ServerConfig:
        """The settings :meth:`to_json` wrote."""
        return cls(**{k: v for k, v in obj.items() if k in _FIELDS})

    @property
    def sweep_interval(self) -> float:
        """How often stale partial sessions are looked for."""
        if self.expiry_interval is not None:
            return self.expiry_interval
        return max(1.0, min(self.partial_ttl / 4, 3600.0))


_FIELDS = frozenset(f.name for f in fields(ServerConfig))
