from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `tests.support` importable

from nbupload.server import start_server
from tests.support.engines import engine_factory
from tests.support.helpers import CREDENTIALS


@pytest.fixture
def server(tmp_path):
    with start_server(root=tmp_path / "root", credentials=CREDENTIALS) as srv:
        yield srv


@pytest.fixture
def journal_dir(tmp_path):
    return tmp_path / "journal"


@pytest.fixture
def make_engine(journal_dir):
    # Fixed-size chunks unless a test asks for growth: many tests count requests.
    with engine_factory(
        fixed_chunks=True,
        journal_dir=journal_dir,
        chunk_size=256 << 10,
        backoff_base=0.05,
        backoff_cap=0.5,
        stall_timeout=5.0,
        read_timeout=10.0,
        write_timeout=10.0,
        connect_timeout=5.0,
    ) as make:
        yield make


@pytest.fixture
def engine(make_engine):
    return make_engine()
