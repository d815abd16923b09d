"""Test files: generated data (warm in the page cache) and sparse files for the RSS growth run.

Dense files are written from one repeated 1 MiB block of random bytes, so generating a
1 GiB file costs a second of I/O rather than a minute of ``os.urandom``, and no client
can win by compressing (none does). Sparse files (``truncate``) cost no disk at all and
read as zeros from the page cache, which is enough to see whether a client's memory
grows with file size.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["make_dense", "make_sparse", "warm"]

_BLOCK = 1 << 20


def make_dense(path: Path, size: int) -> Path:
    block = os.urandom(_BLOCK)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, _BLOCK)
            f.write(block[:n])
            left -= n
    return path


def make_sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def warm(path: Path) -> None:
    """Read the file once so every measured run starts with it in the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.read(fd, 8 << 20):
            pass
    finally:
        os.close(fd)
