"""Fixtures for the hostile-input suite: a real server process per module, and a fence.

The layout of every server's temp dir::

    base/root/       the server root
    base/outside/    what must never change: symlink targets planted under the root point here
    base/*.log       the server's stderr and stdout (DEBUG logging), scanned for secrets

``fence`` snapshots ``base`` (everything but the root) before a test and asserts after it
that nothing outside the root was created, changed or removed, and that the server process
is still alive. Shared names live in ``hostile_fixtures``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hostile_fixtures import (  # noqa: E402
    MAX_FILE_SIZE,
    MAX_REQUEST_SIZE,
    HostileServer,
    assert_inside_root,
    snapshot_outside,
)


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileServer]:
    server = HostileServer(
        tmp_path_factory.mktemp("hostile"), max_file_size=MAX_FILE_SIZE, max_request_size=MAX_REQUEST_SIZE
    )
    server.proc.start()
    try:
        yield server
    finally:
        server.proc.stop()


@pytest.fixture
def fence(hostile_server: HostileServer) -> Iterator[HostileServer]:
    before = snapshot_outside(hostile_server.base, hostile_server.root)
    evil_tmp = Path("/tmp/evil.txt").exists()
    yield hostile_server
    assert hostile_server.proc.alive, "the server process died: " + hostile_server.proc.log_text()[-2000:]
    assert snapshot_outside(hostile_server.base, hostile_server.root) == before, (
        "something outside the root changed"
    )
    assert Path("/tmp/evil.txt").exists() == evil_tmp
    assert_inside_root(hostile_server.root)
