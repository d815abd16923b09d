"""Writing streamed part data at file offsets without stalling the event loop.

Pieces from the HTTP layer are small (tens to hundreds of KiB). They are gathered, without
copying, into batches of :data:`BATCH_BYTES` and each batch is written with one
``os.pwritev`` in a worker thread, so a slow disk (dirty-page throttling, a full device)
delays only that request, never the loop.
One batch is written while the next is gathered (the disk write overlaps the network
read), so memory per request stays at two batches whatever the part size.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

__all__ = ["BATCH_BYTES", "OffsetWriter", "pwrite_all", "pwritev_all"]

BATCH_BYTES = 1024 * 1024
#: A last batch this small is written on the loop: a thread hop costs more than the write.
INLINE_BYTES = 64 * 1024
_MAX_PIECES = 512  # well under IOV_MAX (1024 on Linux)


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """``os.pwrite`` until every byte is written (a short write is followed by the error)."""
    view = memoryview(data)
    while view.nbytes:
        n = os.pwrite(fd, view, offset)
        if n <= 0:  # pragma: no cover - the kernel raises rather than returning 0
            raise OSError("pwrite wrote nothing")
        view = view[n:]
        offset += n


def pwritev_all(fd: int, pieces: list[memoryview], offset: int) -> None:
    """``os.pwritev`` of ``pieces`` at ``offset``, resuming after short writes."""
    if not hasattr(os, "pwritev"):  # pragma: no cover - not Linux
        for piece in pieces:
            pwrite_all(fd, piece, offset)
            offset += piece.nbytes
        return
    i = 0
    while i < len(pieces):
        n = os.pwritev(fd, pieces[i : i + _MAX_PIECES], offset)
        if n <= 0:  # pragma: no cover
            raise OSError("pwritev wrote nothing")
        offset += n
        while i < len(pieces) and n >= pieces[i].nbytes:
            n -= pieces[i].nbytes
            i += 1
        if n:
            pieces[i] = pieces[i][n:]


class OffsetWriter:
    """Consecutive pieces written from ``offset`` on; ``observe`` sees each batch (hashing)."""

    __slots__ = ("_buf", "_buffered", "_observe", "_pending", "_queued", "fd", "offset", "written")

    def __init__(self, fd: int, offset: int, observe: Callable[[memoryview], None] | None = None) -> None:
        self.fd = fd
        self.offset = offset
        self.written = 0
        self._buf: list[memoryview] = []  # views of the received pieces: no copy
        self._buffered = 0
        self._observe = observe
        self._pending: asyncio.Future[None] | None = None
        self._queued = 0

    @property
    def position(self) -> int:
        """Offset just past the last byte accepted (written, being written or buffered)."""
        return self.offset + self.written + self._queued + self._buffered

    async def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                await pending
            finally:
                self.written += self._queued
                self._queued = 0

    def _take(self) -> tuple[list[memoryview], int]:
        batch, size = self._buf, self._buffered
        self._buf, self._buffered = [], 0
        return batch, size

    async def write(self, piece: bytes | memoryview) -> None:
        view = memoryview(piece)
        if not view.nbytes:
            return
        self._buf.append(view)
        self._buffered += view.nbytes
        if self._buffered >= BATCH_BYTES or len(self._buf) >= _MAX_PIECES:
            await self._wait()  # at most one batch in flight; its error surfaces here
            batch, size = self._take()
            loop = asyncio.get_running_loop()
            self._pending = loop.run_in_executor(None, self._write_batch, batch, self.offset + self.written)
            self._queued = size

    async def flush(self) -> None:
        """Write everything accepted so far; ``OSError`` if any write failed."""
        await self._wait()
        if self._buf:
            batch, size = self._take()
            if size <= INLINE_BYTES:
                self._write_batch(batch, self.offset + self.written)
            else:
                await asyncio.to_thread(self._write_batch, batch, self.offset + self.written)
            self.written += size

    def _write_batch(self, batch: list[memoryview], offset: int) -> None:
        pwritev_all(self.fd, list(batch), offset)
        if self._observe is not None:
            for view in batch:
                self._observe(view)

    async def discard(self) -> None:
        """Drop what is buffered and wait for a write in flight (its error ignored), so
        nothing lands after the caller truncates or closes the file."""
        self._take()
        with contextlib.suppress(OSError):
            await self._wait()
