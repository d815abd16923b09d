"""Fixtures for the hostile-input suite: a real server process per module, and a fence.

The layout of every server's temp dir::

    base/root/       the server root
    base/outside/    what must never change: symlink targets planted under the root point here
    base/*.log       the server's stderr and stdout (DEBUG logging), scanned for secrets

``fence`` snapshots ``base`` (everything but the root) before a test and asserts after it
that nothing outside the root was created, changed or removed, and that the server process
is still alive.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hostile_net import ServerProcess  # noqa: E402

SECRET_KEY = "hostile-SK-" + secrets.token_hex(12)
ACCESS_KEY = "AKhostile"
CREDENTIALS = {ACCESS_KEY: SECRET_KEY, "AKother": "other-SK-" + secrets.token_hex(12)}
MAX_FILE_SIZE = 64 * 1024 * 1024
MAX_REQUEST_SIZE = 32 * 1024 * 1024


def snapshot_outside(base: Path, root: Path) -> dict[str, str]:
    """Every path under ``base`` but not under ``root`` (logs excluded), with a content digest."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        here = Path(dirpath)
        if here == root or root in here.parents:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = here / name
            if path == root or path.suffix == ".log":
                continue
            if path.is_symlink():
                out[str(path)] = "link:" + os.readlink(path)
            elif path.is_file():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[str(path)] = "dir"
    return out


def assert_inside_root(root: Path) -> None:
    """Every entry under the root resolves inside it (no symlink made by the server)."""
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue  # planted by a test, not by the server; targets are fenced separately
            assert real_root in path.resolve().parents, path


class HostileServer:
    """A server process with its fenced directory."""

    def __init__(self, base: Path, **options: object) -> None:
        self.base = base
        self.root = base / "root"
        self.outside = base / "outside"
        self.root.mkdir(parents=True, exist_ok=True)
        self.outside.mkdir(exist_ok=True)
        (self.outside / "victim.txt").write_bytes(b"must never change\n")
        self.proc = ServerProcess(self.root, credentials=CREDENTIALS, **options)

    @property
    def address(self) -> tuple[str, int]:
        return self.proc.address

    @property
    def url(self) -> str:
        return self.proc.url


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileServer]:
    server = HostileServer(tmp_path_factory.mktemp("hostile"), max_file_size=MAX_FILE_SIZE,
                           max_request_size=MAX_REQUEST_SIZE)
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
    assert snapshot_outside(hostile_server.base, hostile_server.root) == before, "something outside the root changed"
    assert Path("/tmp/evil.txt").exists() == evil_tmp
    assert_inside_root(hostile_server.root)
