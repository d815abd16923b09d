from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `tests.support` importable

from nbupload.engine import Engine, EngineConfig  # noqa: E402
from nbupload.server import start_server  # noqa: E402

from tests.support.helpers import CREDENTIALS  # noqa: E402


@pytest.fixture
def server(tmp_path):
    with start_server(root=tmp_path / "root", credentials=CREDENTIALS) as srv:
        yield srv


@pytest.fixture
def journal_dir(tmp_path):
    return tmp_path / "journal"


@pytest.fixture
def make_engine(journal_dir):
    engines: list[Engine] = []

    def make(transport=None, **changes) -> Engine:
        settings = dict(
            journal_dir=journal_dir,
            chunk_size=256 << 10,
            backoff_base=0.05,
            backoff_cap=0.5,
            stall_timeout=5.0,
            read_timeout=10.0,
            write_timeout=10.0,
            connect_timeout=5.0,
        )
        settings.update(changes)
        # Fixed-size chunks unless a test asks for growth: many tests count requests.
        settings.setdefault("chunk_max", settings["chunk_size"])
        eng = Engine(EngineConfig(**settings), transport=transport)
        engines.append(eng)
        return eng

    yield make
    for eng in engines:
        eng.shutdown(wait=True, timeout=5)


@pytest.fixture
def engine(make_engine):
    return make_engine()
