"""The ``Uploader`` traitlets Configurable: ``%config Uploader`` and ``ipython_config.py``.

::

    %config Uploader.chunk_size = 8 * 2**20
    c.Uploader.default_url = "https://example.org/upload"   # ipython_config.py

Engine settings are forwarded to ``engine.configure(...)`` when the extension loads and
whenever a trait changes; front-end settings (default URL and protocol, auto-resume) are
read by the magics and the panel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from traitlets import Bool, CaselessStrEnum, Float, Int, TraitError, Unicode, Union, observe, validate
from traitlets.config import Configurable

from ..engine.config import EngineConfig

__all__ = ["ENGINE_TRAITS", "PROTOCOLS", "Uploader"]

PROTOCOLS = ("uploader", "plain", "wcs-append")

_D = EngineConfig()

#: trait name -> keyword of ``engine.configure``
ENGINE_TRAITS = {
    "chunk_size": "chunk_size",
    "chunk_max": "chunk_max",
    "streams": "streams",
    "workers": "workers",
    "retries": "retries",
    "retry_deadline": "retry_deadline",
    "connect_timeout": "connect_timeout",
    "read_timeout": "read_timeout",
    "stall_timeout": "stall_timeout",
    "journal_dir": "journal_dir",
    "verify": "verify",
    "progress_interval": "progress_interval",
    "max_rate": "max_rate",
}


class Uploader(Configurable):
    """Settings of nbupload's engine and of the ``%upload`` magics."""

    chunk_size = Int(_D.chunk_size, help="Bytes per uploader chunk or WCS append to start with.").tag(
        config=True
    )
    chunk_max = Int(_D.chunk_max, help="Largest chunk the adaptive chunk size may reach.").tag(config=True)
    streams = Int(_D.streams, help="Chunks of one upload in flight at once, each on its own connection.").tag(
        config=True
    )
    workers = Int(_D.workers, help="Uploads running at once (each task sends one request at a time).").tag(
        config=True
    )
    retries = Int(_D.retries, help="Failed attempts in a row, without progress, before a task fails.").tag(
        config=True
    )
    retry_deadline = Float(
        _D.retry_deadline, help="Seconds a failing streak may last before the task fails."
    ).tag(config=True)
    connect_timeout = Float(_D.connect_timeout, help="Seconds to establish a connection.").tag(config=True)
    read_timeout = Float(_D.read_timeout, help="Seconds to wait for a server's answer.").tag(config=True)
    stall_timeout = Float(
        _D.stall_timeout, help="Seconds a request may move no bytes before it is abandoned and retried."
    ).tag(config=True)
    verify = Union(
        [Bool(), Unicode()],
        default_value=True,
        help="HTTPS: verify the server's certificate (True), not at all (False), "
        "or against this CA bundle path.",
    ).tag(config=True)
    default_url = Unicode(
        "", help="URL used when %upload is given none (set by `%upload server start`)."
    ).tag(config=True)
    protocol = CaselessStrEnum(PROTOCOLS, default_value="uploader", help="Default protocol.").tag(config=True)
    journal_dir = Unicode(
        "", help="Where unfinished tasks are journaled (empty: NBUPLOAD_HOME or the user data dir)."
    ).tag(config=True)
    progress_interval = Float(
        _D.progress_interval, help="Seconds between progress updates of one task (panel and events)."
    ).tag(config=True)
    max_rate = Float(
        0.0,
        help="Cap on the total upload rate of all tasks and streams, bytes per second (0: no cap).",
    ).tag(config=True)
    auto_resume = Bool(False, help="Resume unfinished tasks from the journal when the extension loads.").tag(
        config=True
    )

    _on_change: Callable[[dict[str, Any]], None] | None = None

    def __init__(self, on_change: Callable[[dict[str, Any]], None] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # values from ipython_config.py reach the engine when it is created
        self._on_change = on_change

    @validate("chunk_size", "workers", "chunk_max", "streams")
    def _positive(self, proposal: Any) -> int:
        if proposal["value"] < 1:
            raise TraitError(f"Uploader.{proposal['trait'].name} must be at least 1")
        value: int = proposal["value"]
        return value

    @validate("max_rate")
    def _not_negative_rate(self, proposal: Any) -> float:
        if proposal["value"] < 0:
            raise TraitError("Uploader.max_rate must not be negative (0: no cap)")
        value: float = proposal["value"]
        return value

    @validate("retries")
    def _not_negative(self, proposal: Any) -> int:
        if proposal["value"] < 0:
            raise TraitError("Uploader.retries must not be negative")
        value: int = proposal["value"]
        return value

    @validate("connect_timeout", "read_timeout", "stall_timeout", "progress_interval", "retry_deadline")
    def _positive_float(self, proposal: Any) -> float:
        if proposal["value"] <= 0:
            raise TraitError(f"Uploader.{proposal['trait'].name} must be positive")
        value: float = proposal["value"]
        return value

    def engine_settings(self, *, changed_only: bool = False) -> dict[str, Any]:
        """The engine's share of the settings, as ``engine.configure`` keywords.

        ``changed_only``: just those set away from their defaults (by ``ipython_config.py`` or
        ``%config``), so loading the extension does not undo an API user's ``engine.configure``.
        """
        traits = self.traits()
        out = {
            key: getattr(self, trait)
            for trait, key in ENGINE_TRAITS.items()
            if not changed_only or getattr(self, trait) != traits[trait].default_value
        }
        if not out.get("journal_dir", True):
            del out["journal_dir"]
        if "max_rate" in out:
            out["max_rate"] = out["max_rate"] or None  # 0: no cap
        return out

    @observe(*ENGINE_TRAITS)
    def _forward(self, change: Any) -> None:
        if self._on_change is not None and change["name"] in ENGINE_TRAITS:
            value = change["new"]
            if change["name"] == "journal_dir" and not value:
                return
            if change["name"] == "max_rate":
                value = value or None  # 0: no cap
            self._on_change({ENGINE_TRAITS[change["name"]]: value})
