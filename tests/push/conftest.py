"""Fixtures for pushing results: a real reference server on loopback, WCS credentials."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `tests.support` importable

from nbupload.engine import Engine
from nbupload.server import ServerHandle, start_server
from tests.support.engines import engine_factory
from tests.support.helpers import CREDENTIALS

AK, SK = next(iter(CREDENTIALS.items()))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerHandle]:
    with start_server(root=tmp_path / "root", credentials=CREDENTIALS) as srv:
        yield srv


@pytest.fixture
def creds() -> dict[str, str]:
    """open_append / upload keyword arguments for the test key pair (bucket ``logs``)."""
    return {"access_key": AK, "secret_key": SK, "scope": "logs"}


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    """Engines with a journal under the test's temp dir, shut down at the end."""
    with engine_factory(
        journal_dir=tmp_path / "journal",
        chunk_size=64 << 10,
        backoff_base=0.05,
        backoff_cap=0.5,
        retries=2,
        stall_timeout=10.0,
    ) as make:
        yield make


@pytest.fixture
def engine(make_engine):
    return make_engine()
