"""Reading back what the server stores: ``GET``/``HEAD /files/<path>`` and ``/wcs/<bucket>/<key>``.

Read-only, and only inside the root. ``/files/<path>`` serves any stored file by its path
under the root (an uploader file ``run1/metrics.csv``, or a WCS object as
``<bucket>/<key>``); ``/wcs/<bucket>/<key>`` serves a WCS object with WCS-shaped errors
(PROTOCOLS.md B6). Neither prefix collides with the WCS write route (``/append/...``).

Why a separate module: routing stays one line in :mod:`.app`, and reading shares nothing
with the upload handlers except the name checks and the object store's sidecars.

Safety. The path is split on ``/`` *before* percent-decoding (``raw_path``), so ``%2F`` is
never a separator; every component is checked as a WCS key component is
(:func:`~.names.check_components`: no ``..``, ``.``, empty, backslash, control character,
reserved name; the first must not start with ``.`` so ``.partial`` and ``.wcs`` stay
private), and the walk uses ``O_NOFOLLOW`` from the root's descriptor, so a symlink planted
under the root is never followed.

Growing objects. An appendable object is served up to its *committed* size (the sidecar's),
never the bytes of an append still being received (which a failure would roll back), so a
notebook can watch another's log while it grows. ``Range: bytes=N-`` answers 206 from ``N``:
a reader polls for the tail. ``?stat`` answers JSON ``{"size", "hash", "appendable",
"mtime"}`` where ``hash`` is the WCS etag (cheap for appendable objects thanks to the
sidecar's block digests; a full read otherwise): the content check a client uses to skip an
unchanged file.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import mimetypes
import os
import stat
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes

from ..protocols.wcs import OBJECT_TYPE_HEADER, EtagHasher, format_append_error
from .http import Send, header, respond
from .names import UnsafeNameError, check_components, open_dir_chain
from .state import ServerState

__all__ = ["FILES_PREFIX", "ROUTE_HEADER", "WCS_PREFIX", "handle_read", "is_read_path"]

#: On every answer of these routes, so a client can tell "no such file" from "no such route".
ROUTE_HEADER = "x-nbupload-read"
FILES_PREFIX = "/files/"
WCS_PREFIX = "/wcs/"
_PIECE = 1024 * 1024
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def is_read_path(path: str) -> bool:
    """Whether ``path`` belongs to the read routes (any method: others get 405)."""
    return path.startswith((FILES_PREFIX, WCS_PREFIX))


class _ReadError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class _Opened:
    fd: int
    size: int
    mtime: float
    appendable: bool
    mime: str
    oid: str | None


def _components(scope: dict[str, Any], prefix: str) -> list[str]:
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    raw = raw.split(b"?", 1)[0]
    rest = raw[len(prefix) :]
    comps = []
    for piece in rest.split(b"/"):
        try:
            comps.append(unquote_to_bytes(piece).decode("utf-8"))
        except UnicodeDecodeError:
            raise _ReadError(400, "the path is not valid UTF-8") from None
    if any("/" in comp for comp in comps):  # a %2F: never a separator, never a path
        raise _ReadError(400, "invalid path: a component holds an encoded '/'")
    try:
        check_components(comps, "path")
    except UnsafeNameError as exc:
        raise _ReadError(400, f"invalid path: {exc}") from None
    if prefix == WCS_PREFIX and len(comps) < 2:
        raise _ReadError(400, "give /wcs/<bucket>/<key>")
    return comps


def _open(state: ServerState, comps: list[str]) -> _Opened:
    """Open the stored file read-only (blocking: call in a worker thread)."""
    try:
        dir_fd = open_dir_chain(state.root_fd, comps[:-1], create=False)
    except (FileNotFoundError, UnsafeNameError):
        raise _ReadError(404, "no such file") from None
    try:
        fd = os.open(comps[-1], os.O_RDONLY | os.O_NOFOLLOW | _CLOEXEC, dir_fd=dir_fd)
    except OSError:  # missing, a symlink (ELOOP), unreadable
        raise _ReadError(404, "no such file") from None
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _ReadError(404, "not a file (a folder?)")
        size, appendable, mime, oid = st.st_size, False, None, None
        if len(comps) >= 2:
            store = state.objects
            oid = store.object_id(comps[0], "/".join(comps[1:]))
            meta = store._read_meta(oid)
            if meta is not None:  # an appendable object: only what is committed
                appendable = True
                size = min(size, int(meta.get("size", 0)))
                mime = meta.get("mimeType") or None
        mime = mime or mimetypes.guess_type(comps[-1])[0] or "application/octet-stream"
        return _Opened(fd, size, st.st_mtime, appendable, mime, oid if appendable else None)
    except BaseException:
        os.close(fd)
        raise


def _etag(state: ServerState, opened: _Opened) -> str:
    """The WCS etag of the served bytes (blocking)."""
    if opened.oid is not None:  # the sidecar's block digests: only the last block is read
        hasher, _ = state.objects._resume(opened.fd, opened.oid, opened.size, reuse=True)
        return hasher.etag()
    hasher = EtagHasher()
    offset = 0
    while offset < opened.size:
        data = os.pread(opened.fd, min(_PIECE, opened.size - offset), offset)
        if not data:
            break
        hasher.update(data)
        offset += len(data)
    return hasher.etag()


def _byte_range(value: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` half-open for one ``bytes=`` range, ``None`` for the whole file;
    :class:`_ReadError` 416 when it cannot be satisfied."""
    if not value or not value.strip().startswith("bytes=") or "," in value:
        return None
    first, _, last = value.strip()[6:].partition("-")
    first, last = first.strip(), last.strip()
    if not (first.isascii() and last.isascii()) or not (first.isdigit() or last.isdigit()):
        return None
    if not first:  # the last N bytes
        n = int(last)
        start, end = max(size - n, 0), size
    else:
        start = int(first)
        end = min(int(last) + 1, size) if last.isdigit() else size
    if start >= size or end <= start:
        raise _ReadError(
            416, f"range not satisfiable: the file has {size} bytes", {"content-range": f"bytes */{size}"}
        )
    return start, end


async def _stream(send: Send, fd: int, start: int, end: int) -> None:
    offset = start
    while offset < end:
        data = await asyncio.to_thread(os.pread, fd, min(_PIECE, end - offset), offset)
        if not data:  # shrunk while being read: end short (the client sees the length differ)
            break
        offset += len(data)
        await send({"type": "http.response.body", "body": data, "more_body": offset < end})
    if offset < end or start == end:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _answer(state: ServerState, scope: dict[str, Any], send: Send, prefix: str) -> None:
    comps = _components(scope, prefix)
    opened = await asyncio.to_thread(_open, state, comps)
    try:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        common = {
            "last-modified": email.utils.formatdate(opened.mtime, usegmt=True),
            OBJECT_TYPE_HEADER: "Appendable" if opened.appendable else "Normal",
            ROUTE_HEADER: "1",
        }
        if "stat" in query:
            etag = await asyncio.to_thread(_etag, state, opened)
            info = {"size": opened.size, "hash": etag, "appendable": opened.appendable, "mtime": opened.mtime}
            await respond(send, 200, json.dumps(info).encode("utf-8"), common)
            return
        rng = _byte_range(header(scope, "range"), opened.size)
        start, end = rng if rng is not None else (0, opened.size)
        headers = [
            (b"content-type", opened.mime.encode("latin-1")),
            (b"content-length", str(end - start).encode()),
            (b"accept-ranges", b"bytes"),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in common.items()),
        ]
        if rng is not None:
            headers.append((b"content-range", f"bytes {start}-{end - 1}/{opened.size}".encode()))
        await send({"type": "http.response.start", "status": 206 if rng else 200, "headers": headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
        else:
            await _stream(send, opened.fd, start, end)
    finally:
        os.close(opened.fd)


async def handle_read(state: ServerState, scope: dict[str, Any], send: Send) -> None:
    """Answer ``GET``/``HEAD`` on ``/files/...`` or ``/wcs/...``."""
    path: str = scope["path"]
    prefix = WCS_PREFIX if path.startswith(WCS_PREFIX) else FILES_PREFIX
    try:
        if scope["method"] not in ("GET", "HEAD"):
            raise _ReadError(405, "read-only: use GET or HEAD", {"allow": "GET, HEAD"})
        await _answer(state, scope, send, prefix)
        return
    except _ReadError as exc:
        error = exc
    if prefix == WCS_PREFIX:
        _, headers, body = format_append_error(error.status, error.message)
        headers.update(error.headers)
    else:
        headers = dict(error.headers)
        obj = {"result": "ERROR", "code": error.status, "message": error.message}
        body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    headers[ROUTE_HEADER] = "1"
    with contextlib.suppress(Exception):
        await respond(send, error.status, body if scope["method"] != "HEAD" else b"", headers)
