"""What the hostile-input tests share: credentials, limits, the fenced server, the fence checks.

A uniquely named module (not ``conftest``): several conftest modules are loaded in one
pytest run, so ``from conftest import ...`` would be ambiguous.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from hostile_net import ServerProcess

__all__ = [
    "ACCESS_KEY",
    "CREDENTIALS",
    "HostileServer",
    "MAX_FILE_SIZE",
    "MAX_REQUEST_SIZE",
    "SECRET_KEY",
    "assert_inside_root",
    "snapshot_outside",
]

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
