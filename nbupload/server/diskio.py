"""Writing streamed part data at file offsets without stalling the event loop.

Pieces from the HTTP layer are small (tens of KiB). They are gathered into batches of
:data:`BATCH_BYTES` and each batch is written with ``os.pwrite`` in a worker thread, so a
slow disk (dirty-page throttling, a full device) delays only that request, never the loop.
A batch is bounded, so memory per request stays at one batch whatever the part size.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

__all__ = ["BATCH_BYTES", "OffsetWriter", "pwrite_all"]

BATCH_BYTES = 1024 * 1024


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """``os.pwrite`` until every byte is written (a short write is followed by the error)."""
    view = memoryview(data)
    while view.nbytes:
        n = os.pwrite(fd, view, offset)
        if n <= 0:  # pragma: no cover - the kernel raises rather than returning 0
            raise OSError("pwrite wrote nothing")
        view = view[n:]
        offset += n


class OffsetWriter:
    """Consecutive pieces written from ``offset`` on; ``observe`` sees each batch (hashing)."""

    __slots__ = ("_buf", "_observe", "fd", "offset", "written")

    def __init__(self, fd: int, offset: int, observe: Callable[[bytearray], None] | None = None) -> None:
        self.fd = fd
        self.offset = offset
        self.written = 0
        self._buf = bytearray()
        self._observe = observe

    @property
    def position(self) -> int:
        """Offset just past the last byte accepted (written or buffered)."""
        return self.offset + self.written + len(self._buf)

    async def write(self, piece: bytes | memoryview) -> None:
        self._buf += piece
        if len(self._buf) >= BATCH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if not self._buf:
            return
        data, self._buf = self._buf, bytearray()
        await asyncio.to_thread(self._write_batch, data, self.offset + self.written)
        self.written += len(data)

    def _write_batch(self, data: bytearray, offset: int) -> None:
        pwrite_all(self.fd, data, offset)
        if self._observe is not None:
            self._observe(data)

    def discard(self) -> None:
        self._buf = bytearray()
