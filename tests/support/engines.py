"""Engines made by a test with its own settings, all shut down when the test ends.

The engine, push and chaos layers each build engines the same way (a journal under the
test's temp dir, quick backoff, a few settings of their own): :func:`engine_factory` is that
one way, and each layer's ``make_engine`` fixture only names its defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from nbupload.engine import Engine, EngineConfig

__all__ = ["engine_factory"]


@contextmanager
def engine_factory(*, fixed_chunks: bool = False, **defaults: Any) -> Iterator[Callable[..., Engine]]:
    """Yield ``make(transport=None, **changes) -> Engine``: an :class:`EngineConfig` of
    ``defaults`` updated with ``changes``. With ``fixed_chunks``, ``chunk_max`` follows the
    chunk size unless given (chunks do not grow: tests that count requests rely on it). On
    exit every engine made is shut down (a second shutdown, after a ``with engine:``, does
    nothing), so a failed test leaves no worker threads behind."""
    engines: list[Engine] = []

    def make(transport: httpx.BaseTransport | None = None, **changes: Any) -> Engine:
        settings = {**defaults, **changes}
        if fixed_chunks:
            settings.setdefault("chunk_max", settings["chunk_size"])
        engine = Engine(EngineConfig(**settings), transport=transport)
        engines.append(engine)
        return engine

    try:
        yield make
    finally:
        for engine in engines:
            engine.shutdown(wait=True, timeout=5)
