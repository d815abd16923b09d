"""Fixtures for pushing results: a real reference server on loopback, WCS credentials."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `tests.support` importable

from nbupload.server import ServerHandle, start_server
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
