"""WCS appendable objects on disk, with their etag state kept beside them.

An object lives at ``ROOT/<bucket>/<key>``. Its sidecar, outside the object tree, is
``ROOT/.wcs/<oid>.json`` (the *appendable marker*: bucket, key, committed size, mime type)
plus ``ROOT/.wcs/<oid>.blocks`` (the 20-byte SHA1 of every complete 4 MiB block, in order),
so an append re-hashes only the object's last partial block and the new bytes.
``ROOT/.wcs/locks/<oid>.lock`` is the object's cross-process lock: an append probes, writes
and commits under it, so appends from several processes serving the root are serialized.

An append writes the new bytes at the committed size, then writes the new block digests,
then the JSON (atomically: temp + rename): the JSON's ``size`` is the commit point. A failed
append truncates the object back (or removes it when the append created it); at the next
append, an object longer than its committed size (a crash mid-append) is truncated back too.
An object file without a sidecar is a ``Normal`` object and refuses appends.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocols.wcs import BLOCK_SIZE, EtagHasher
from .diskio import pwrite_all
from .locks import LockTable
from .names import UnsafeNameError, open_dir_chain

__all__ = ["WCS_DIR", "AppendTarget", "NotAppendable", "ObjectProbe", "ObjectStore", "private_dir"]

WCS_DIR = ".wcs"
_DIGEST = 20
_READ = 1024 * 1024
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def private_dir(path: Path) -> Path:
    """Create ``path`` (0700) if needed; ``NotADirectoryError`` if a symlink or file was
    planted there, so nothing is ever written through it to outside the root."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.is_symlink() or not path.is_dir():
        raise NotADirectoryError(f"{path} is a symlink or not a directory")
    return path


class NotAppendable(Exception):
    """The object exists but was not created by appends (a ``Normal`` object)."""

    def __init__(self, size: int) -> None:
        super().__init__("object exists and is not appendable")
        self.size = size


@dataclass
class ObjectProbe:
    """What an object is before an append: its committed size and sidecar."""

    oid: str
    comps: list[str]
    size: int
    exists: bool
    meta: dict[str, Any] | None


@dataclass
class AppendTarget:
    """An object opened for one append (under its lock)."""

    probe: ObjectProbe
    fd: int
    created: bool
    hasher: EtagHasher
    start: int
    kept_blocks: int = 0  # block digests reused from the sidecar (unchanged by this append)
    written: int = 0
    closed: bool = field(default=False)


class ObjectStore:
    """Appendable objects under ``root``; one lock per object serializes appends."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sidecars = root / WCS_DIR
        self.root_fd = -1
        self._locks = LockTable()

    @staticmethod
    def object_id(bucket: str, key: str) -> str:
        return hashlib.sha256(f"{bucket}\x00{key}".encode("utf-8", "surrogatepass")).hexdigest()[:40]

    @contextlib.asynccontextmanager
    async def locked(self, oid: str) -> AsyncIterator[None]:
        """Hold the object's lock, shared by every process serving the root (``.wcs/locks``):
        appends to one object are serialized whichever process receives them."""
        directory = private_dir(private_dir(self.sidecars) / "locks")
        async with self._locks.hold(directory / f"{oid}.lock"):
            yield

    def sweep_spool(self, ttl: float) -> int:
        """Remove spooled append bodies left by a crash (untouched for ``ttl`` seconds)."""
        removed = 0
        now = time.time()
        with contextlib.suppress(OSError), os.scandir(self.sidecars / "spool") as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > ttl:
                        os.unlink(entry.path)
                        removed += 1
        return removed

    # -- sidecar -------------------------------------------------------------------------
    def _meta_path(self, oid: str) -> Path:
        return self.sidecars / f"{oid}.json"

    def _blocks_path(self, oid: str) -> Path:
        return self.sidecars / f"{oid}.blocks"

    def _read_meta(self, oid: str) -> dict[str, Any] | None:
        try:
            obj = json.loads(self._meta_path(oid).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return obj if isinstance(obj, dict) and obj.get("appendable") else None

    def _write_meta(self, oid: str, meta: dict[str, Any]) -> None:
        private_dir(self.sidecars)
        data = json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        tmp = self.sidecars / f".{oid}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | _CLOEXEC, 0o600)
        try:
            pwrite_all(fd, data, 0)
        finally:
            os.close(fd)
        os.replace(tmp, self._meta_path(oid))

    def _forget(self, oid: str) -> None:
        for path in (self._meta_path(oid), self._blocks_path(oid)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- append steps (blocking: call in a worker thread) --------------------------------
    def probe(self, bucket: str, key: str, comps: list[str]) -> ObjectProbe:
        """The object's state; :class:`NotAppendable` or :class:`UnsafeNameError` when it
        cannot be appended to."""
        oid = self.object_id(bucket, key)
        meta = self._read_meta(oid)
        try:
            dir_fd = open_dir_chain(self.root_fd, comps[:-1], create=False)
        except FileNotFoundError:
            dir_fd = -1
        st = None
        if dir_fd >= 0:
            try:
                st = os.stat(comps[-1], dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            finally:
                os.close(dir_fd)
        if st is None:
            if meta is not None:  # the object was removed behind our back: start afresh
                self._forget(oid)
            return ObjectProbe(oid, comps, 0, False, None)
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeNameError("the object path is a symlink")
        if not stat.S_ISREG(st.st_mode):
            raise NotAppendable(0)
        if meta is None:
            raise NotAppendable(st.st_size)
        return ObjectProbe(oid, comps, int(meta.get("size", 0)), True, meta)

    def begin(self, probe: ObjectProbe) -> AppendTarget:
        """Open the object for writing at its committed size, with the etag state resumed."""
        if not probe.exists:
            # The sidecar first: a crash before this append commits then leaves an appendable
            # object of committed size 0 (truncated back at the next append), not an object
            # file without a sidecar, which would pass for a Normal one and refuse every append.
            self._write_meta(probe.oid, {"appendable": True, "size": 0, "created": time.time()})
        dir_fd = open_dir_chain(self.root_fd, probe.comps[:-1], create=True)
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | _CLOEXEC
            fd = os.open(probe.comps[-1], flags, 0o644, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symlink was planted
                raise UnsafeNameError("the object path is a symlink") from None
            raise
        finally:
            os.close(dir_fd)
        try:
            actual = os.fstat(fd).st_size
            size = probe.size
            if actual > size:  # a crash mid-append left uncommitted bytes
                os.ftruncate(fd, size)
            if actual < size:  # shrunk behind our back: trust the file
                probe.size = actual
            hasher, kept = self._resume(fd, probe.oid, probe.size, reuse=actual >= size)
        except BaseException:
            os.close(fd)
            raise
        return AppendTarget(probe, fd, not probe.exists, hasher, probe.size, kept)

    def _resume(self, fd: int, oid: str, size: int, *, reuse: bool) -> tuple[EtagHasher, int]:
        full = size // BLOCK_SIZE
        prefix = full - 1 if full and size % BLOCK_SIZE == 0 else full
        digests: list[bytes] = []
        if reuse and prefix:
            try:
                with open(self._blocks_path(oid), "rb") as f:
                    raw = f.read(prefix * _DIGEST)
            except OSError:
                raw = b""
            if len(raw) == prefix * _DIGEST:
                digests = [raw[i : i + _DIGEST] for i in range(0, len(raw), _DIGEST)]
        if len(digests) != prefix:
            prefix = 0
        hasher = EtagHasher.from_blocks(digests)
        offset = prefix * BLOCK_SIZE
        while offset < size:
            data = os.pread(fd, min(_READ, size - offset), offset)
            if not data:
                raise OSError(f"object shorter than its committed size ({offset} < {size})")
            hasher.update(data)
            offset += len(data)
        return hasher, prefix

    def write(self, target: AppendTarget, data: bytes | bytearray | memoryview) -> None:
        pwrite_all(target.fd, data, target.start + target.written)
        target.hasher.update(data)
        target.written += len(data)

    def commit(self, target: AppendTarget, info: dict[str, Any]) -> tuple[int, str]:
        """Make the append durable in the sidecar; the new size and the object's etag."""
        oid = target.probe.oid
        size = target.start + target.written
        digests = target.hasher.block_digests()
        keep = min(target.kept_blocks, len(digests))
        private_dir(self.sidecars)
        bfd = os.open(self._blocks_path(oid), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | _CLOEXEC, 0o600)
        try:
            pwrite_all(bfd, b"".join(digests[keep:]), keep * _DIGEST)
            os.ftruncate(bfd, len(digests) * _DIGEST)
        finally:
            os.close(bfd)
        now = time.time()
        old = target.probe.meta or {}
        meta = {
            "appendable": True,
            "bucket": info.get("bucket"),
            "key": info.get("key"),
            "size": size,
            "created": old.get("created", now),
            "updated": now,
        }
        for name in ("mimeType", "deadline"):
            value = info.get(name) if info.get(name) is not None else old.get(name)
            if value is not None:
                meta[name] = value
        self._write_meta(oid, meta)
        self.close(target)
        return size, target.hasher.etag()

    def rollback(self, target: AppendTarget) -> None:
        """Leave the object exactly as before the append."""
        if target.closed:
            return
        try:
            if target.created:
                dir_fd = open_dir_chain(self.root_fd, target.probe.comps[:-1], create=False)
                try:
                    os.unlink(target.probe.comps[-1], dir_fd=dir_fd)
                finally:
                    os.close(dir_fd)
                self._forget(target.probe.oid)
            else:
                os.ftruncate(target.fd, target.start)
        finally:
            self.close(target)

    def close(self, target: AppendTarget) -> None:
        if not target.closed:
            target.closed = True
            os.close(target.fd)
