"""The fast sink: an HTTP/1.1 server that reads every body and throws it away.

It exists so a throughput figure measures the *client*, not a server writing to disk. It
still answers like the protocols, so every client completes a real upload against it:

- an uploader query (``server=uploader&action=query``) gets a "resume supported" answer
  listing the ranges the sink counted for that session (boundary and field), or "not
  supported" when the URL path starts with ``/noresume``;
- an uploader chunk (a file part with ``range="start-end/total"``) that arrived whole is
  counted in its session's ranges, and its answer carries ``range`` (what is held) and,
  once the ranges cover the file, ``complete: true``, as the reference server's do: an
  engine that ends "done" only when the server holds the whole file (issue 10) needs it.
  A finished session is forgotten;
- ``POST .../append/<position>`` (WCS, the object named by the form's ``key`` field) gets
  200 with ``x-wcs-next-append-position`` set to ``position`` plus the file part's length,
  ``x-wcs-object-type: Appendable`` and ``hash=<etag of the object so far>``: the sink
  hashes the file bytes of appends (only those; SHA-1 costs about a second per GB) so a
  client can verify them. An append at a position other than the object's size gets 409
  with the real size;
- anything else (a plain multipart POST, a raw ``PUT``) gets ``{"result":"OK","code":0}``.

Each connection is served by its own thread reading into one preallocated 1 MiB buffer
with ``recv_into``, so the sink costs little CPU and allocates nothing per byte. For every
request it records the file bytes it saw (for multipart bodies the length of the last
part, which is the file in every client measured here), so a harness can check that an
upload arrived whole. ``GET /_sink/stats`` returns the counters as JSON;
``POST /_sink/reset`` zeroes them.

Run: ``python -m benchmarks.sink --port 0`` prints ``sink: serving on http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nbupload.protocols import uploader, wcs
from nbupload.protocols.ranges import RangeSet

__all__ = ["SinkServer", "SinkStats", "main"]

_BUFFER = 1 << 20
_HEAD_LIMIT = 64 * 1024
_PREFIX_LIMIT = 64 * 1024
_BOUNDARY = re.compile(rb'boundary="?([^";\r\n]+)"?', re.I)
_RANGE_ATTR = re.compile(rb'range="(\d+)-(\d+)/(\d+)"', re.IGNORECASE)
_NAME_ATTR = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)
_KEY_FIELD = re.compile(rb'name="key"\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n]*)\r\n', re.IGNORECASE)
_FILE_HEAD = re.compile(rb"\r\nContent-Disposition:[^\r\n]*filename=[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n", re.I)


class ClientGone(Exception):
    """The peer closed the connection in the middle of a request."""


@dataclass
class SinkStats:
    """Counters since the last reset, guarded by ``lock``."""

    requests: int = 0
    body_bytes: int = 0
    file_bytes: int = 0
    uploads: int = 0  # requests that carried a file part or a raw body
    queries: int = 0
    appends: int = 0
    aborted: int = 0
    first_byte_at: float | None = None  # time.monotonic() (system-wide on Linux)
    last_byte_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {k: v for k, v in self.__dict__.items() if k != "lock"}

    def reset(self) -> None:
        with self.lock:
            for name in ("requests", "body_bytes", "file_bytes", "uploads", "queries", "appends", "aborted"):
                setattr(self, name, 0)
            self.first_byte_at = self.last_byte_at = None


class _Reader:
    """Buffered reads from a socket: lines for heads, bulk discards for bodies."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()
        self.scratch = bytearray(_BUFFER)
        self.view = memoryview(self.scratch)

    def read_until(self, delim: bytes, limit: int) -> bytes | None:
        """Bytes up to and including ``delim``; None on a clean close before any byte."""
        start = 0
        while True:
            idx = self.pending.find(delim, start)
            if idx >= 0:
                out = bytes(self.pending[: idx + len(delim)])
                del self.pending[: idx + len(delim)]
                return out
            if len(self.pending) > limit:
                raise ClientGone("head too large")
            start = max(0, len(self.pending) - len(delim) + 1)
            n = self.sock.recv_into(self.view)
            if n == 0:
                if self.pending:
                    raise ClientGone("closed inside a head")
                return None
            self.pending += self.view[:n]

    def discard(
        self, count: int, prefix: bytearray | None, stats: SinkStats, tap: _FileTap | None = None
    ) -> None:
        """Consume ``count`` body bytes, keeping the first ``_PREFIX_LIMIT`` in ``prefix``
        (and showing every byte to ``tap``, which hashes a WCS append's file part)."""
        left = count
        if self.pending:
            take = min(left, len(self.pending))
            if prefix is not None and len(prefix) < _PREFIX_LIMIT:
                prefix += self.pending[: min(take, _PREFIX_LIMIT - len(prefix))]
            if tap is not None:
                tap.feed(memoryview(self.pending)[:take], prefix)
            del self.pending[:take]
            left -= take
            self._note(stats, take)
        while left:
            n = self.sock.recv_into(self.view, min(left, _BUFFER))
            if n == 0:
                raise ClientGone("closed inside a body")
            if prefix is not None and len(prefix) < _PREFIX_LIMIT:
                prefix += self.view[: min(n, _PREFIX_LIMIT - len(prefix))]
            if tap is not None:
                tap.feed(self.view[:n], prefix)
            left -= n
            self._note(stats, n)

    @staticmethod
    def _note(stats: SinkStats, n: int) -> None:
        now = time.monotonic()
        with stats.lock:
            stats.body_bytes += n
            if stats.first_byte_at is None:
                stats.first_byte_at = now
            stats.last_byte_at = now


class _FileTap:
    """Feeds the file part of a multipart body (WCS append) to an etag hasher as it streams by.

    The file part starts after its head, found in the body's first bytes (``prefix``), and
    ends before the closing boundary, whose length the content type gives. Once the head
    (and the ``key`` field before it) has arrived, ``resolve(prefix)`` says which hasher the
    bytes go to: a copy of the object's, continued, or None when the append will be refused.
    """

    def __init__(
        self, content_type: bytes, body_len: int, resolve: Callable[[bytes], wcs.EtagHasher | None]
    ) -> None:
        m = _BOUNDARY.search(content_type)
        self.end = body_len - len(b"\r\n--" + m.group(1) + b"--\r\n") if m else -1
        self.resolve = resolve
        self.hasher: wcs.EtagHasher | None = None
        self.offset = 0  # body bytes seen so far
        self.start: int | None = None  # where the file part's data begins

    def feed(self, data: memoryview, prefix: bytearray | None) -> None:
        n = len(data)
        if self.start is None and prefix is not None:
            head = _FILE_HEAD.search(b"\r\n" + bytes(prefix))
            if head:
                self.start = head.end() - 2
                self.hasher = self.resolve(bytes(prefix))
        if self.start is not None and self.hasher is not None and self.end > self.start:
            lo, hi = max(self.start, self.offset), min(self.end, self.offset + n)
            if hi > lo:
                self.hasher.update(data[lo - self.offset : hi - self.offset])
        self.offset += n


@dataclass
class _Sessions:
    """What the sink holds for uploader sessions and WCS objects (counts and hashes, no data)."""

    ranges: dict[tuple[str, str], RangeSet] = field(default_factory=dict)  # (boundary, field) -> held
    objects: dict[str, wcs.EtagHasher] = field(default_factory=dict)  # WCS key -> etag so far
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def clear(self) -> None:
        with self.lock:
            self.ranges.clear()
            self.objects.clear()


def _file_part_length(content_type: bytes, prefix: bytes, body_len: int) -> int | None:
    """Length of the last (file) part of a multipart body, from its first bytes and length."""
    m = _BOUNDARY.search(content_type)
    if not m:
        return None
    head = _FILE_HEAD.search(b"\r\n" + prefix)
    if not head:
        return None
    data_start = head.end() - 2
    trailer = len(b"\r\n--" + m.group(1) + b"--\r\n")
    return max(0, body_len - data_start - trailer)


class SinkServer:
    """The sink, in this process: ``start()`` binds and serves on daemon threads."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.create_server((host, port), backlog=64)
        self.host, self.port = self.sock.getsockname()[:2]
        self.stats = SinkStats()
        self.sessions = _Sessions()
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SinkServer:
        threading.Thread(target=self._accept_loop, name="sink-accept", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self.sock.close()

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), name="sink-conn", daemon=True).start()

    # ------------------------------------------------------------------ one connection
    def _serve(self, conn: socket.socket) -> None:
        reader = _Reader(conn)
        try:
            while True:
                head = reader.read_until(b"\r\n\r\n", _HEAD_LIMIT)
                if head is None:
                    return
                if not self._handle(conn, reader, head):
                    return
        except (ClientGone, ConnectionError, OSError):
            with self.stats.lock:
                self.stats.aborted += 1
        finally:
            conn.close()

    def _handle(self, conn: socket.socket, reader: _Reader, head: bytes) -> bool:
        lines = head.split(b"\r\n")
        method, target, version = ([*lines[0].split(b" ", 2), b"", b""])[:3]
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            if b":" in line:
                k, _, v = line.partition(b":")
                headers[k.strip().lower()] = v.strip()
        keep_alive = version == b"HTTP/1.1" and headers.get(b"connection", b"").lower() != b"close"
        if headers.get(b"expect", b"").lower() == b"100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        path = target.split(b"?", 1)[0].decode("latin-1")
        ctype = headers.get(b"content-type", b"")
        is_query = ctype.lower().startswith(b"application/x-www-form-urlencoded")
        is_multipart = ctype.lower().startswith(b"multipart/")
        prefix = bytearray() if (is_query or is_multipart) else None
        append = _APPEND.search(path) if method == b"POST" and is_multipart else None
        tap = None
        if append and b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            position = int(append.group(1))
            tap = _FileTap(ctype, int(headers.get(b"content-length", b"0") or 0),
                           lambda pre: self._continue_object(pre, position))  # fmt: skip
        body_len = self._read_body(reader, headers, prefix, tap)
        hasher = tap.hasher if tap is not None else None
        with self.stats.lock:
            self.stats.requests += 1
        status, extra, body = self._answer(
            method, path, ctype, bytes(prefix or b""), body_len, is_query, is_multipart, hasher
        )
        out = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}".encode()]
        for k, v in {"content-type": "application/json", **extra}.items():
            out.append(f"{k}: {v}".encode())
        out.append(f"content-length: {len(body)}".encode())
        if not keep_alive:
            out.append(b"connection: close")
        conn.sendall(b"\r\n".join(out) + b"\r\n\r\n" + body)
        return keep_alive

    def _read_body(
        self,
        reader: _Reader,
        headers: dict[bytes, bytes],
        prefix: bytearray | None,
        tap: _FileTap | None = None,
    ) -> int:
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            total = 0
            while True:
                line = reader.read_until(b"\r\n", 1024)
                if line is None:
                    raise ClientGone("closed inside a chunked body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while reader.read_until(b"\r\n", _HEAD_LIMIT) not in (b"\r\n", None):
                        pass  # trailers
                    return total
                reader.discard(size, prefix, self.stats)
                total += size
                if reader.read_until(b"\r\n", 16) != b"\r\n":
                    raise ClientGone("bad chunk framing")
        length = int(headers.get(b"content-length", b"0") or 0)
        reader.discard(length, prefix, self.stats, tap)
        return length

    def _answer(
        self,
        method: bytes,
        path: str,
        ctype: bytes,
        prefix: bytes,
        body_len: int,
        is_query: bool,
        is_multipart: bool,
        hasher: wcs.EtagHasher | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        stats = self.stats
        if method == b"GET" and path == "/_sink/stats":
            return 200, {}, json.dumps(stats.as_dict()).encode()
        if method == b"POST" and path == "/_sink/reset":
            stats.reset()
            self.sessions.clear()
            return 200, {}, b"{}"
        if method == b"GET":
            return 200, {}, b'{"sink":true}'
        if is_query:
            try:
                boundary = uploader.parse_query_request(prefix)
            except Exception:  # noqa: BLE001 - any unparseable form is a 400
                return 400, {}, b'{"result":"ERROR","code":400,"message":"bad form"}'
            with stats.lock:
                stats.queries += 1
            if path.startswith("/noresume"):
                return 200, {}, b'{"protocol":"uploader","support":false}'
            with self.sessions.lock:
                held = {f: r for (b, f), r in self.sessions.ranges.items() if b == boundary}
            return 200, {}, uploader.format_query_answer(boundary, held)
        file_len = _file_part_length(ctype, prefix, body_len) if is_multipart else body_len
        with stats.lock:
            if file_len is not None:
                stats.file_bytes += file_len
                stats.uploads += 1
        m = _APPEND.search(path)
        if m and method == b"POST":
            with stats.lock:
                stats.appends += 1
            return self._append(int(m.group(1)), prefix, file_len or 0, hasher)
        chunk = _chunk_range(ctype, prefix) if is_multipart and file_len is not None else None
        if chunk is not None:
            return self._chunk(*chunk, file_len or 0)
        return 200, {}, uploader.format_ok()

    def _chunk(
        self, boundary: str, name: str, start: int, end: int, total: int, got: int
    ) -> tuple[int, dict[str, str], bytes]:
        """Count a whole chunk in its session; answer with what is held, and ``complete`` at the end."""
        with self.sessions.lock:
            held = self.sessions.ranges.get((boundary, name), RangeSet())
            if got == end - start and 0 <= start < end <= total:
                held = held.add(start, end)
            complete = held.covers(total)
            if complete:
                self.sessions.ranges.pop((boundary, name), None)
            else:
                self.sessions.ranges[(boundary, name)] = held
        if complete:
            return 200, {}, uploader.format_ok(range=str(held), complete=True)
        return 200, {}, uploader.format_ok(range=str(held))

    def _continue_object(self, prefix: bytes, position: int) -> wcs.EtagHasher | None:
        """The hasher an append's bytes go to: a copy of its object's (committed only when the
        append is whole), or None when the position is wrong (the append will get 409)."""
        key = _append_key(prefix)
        with self.sessions.lock:
            obj = self.sessions.objects.get(key)
            if (obj.size if obj is not None else 0) != position:
                return None
            return obj.copy() if obj is not None else wcs.EtagHasher()

    def _append(
        self, position: int, prefix: bytes, length: int, hasher: wcs.EtagHasher | None
    ) -> tuple[int, dict[str, str], bytes]:
        """A WCS append: the object's size and etag move on only when the position is right."""
        key = _append_key(prefix)
        with self.sessions.lock:
            obj = self.sessions.objects.get(key)
            size = obj.size if obj is not None else 0
            if position != size:
                status, headers, body = wcs.format_append_error(
                    409, f"position {position} is not the object's size {size}", next_position=size,
                    object_type="Appendable" if obj is not None else None,
                )  # fmt: skip
                return status, headers, body
            if hasher is None or hasher.size != position + length:  # a chunked body: counted, not hashed
                return wcs.format_append_success(position + length, "")
            self.sessions.objects[key] = hasher
            return wcs.format_append_success(hasher.size, hasher.etag())


_APPEND = re.compile(r"/append/(\d+)/?$")


def _chunk_range(content_type: bytes, prefix: bytes) -> tuple[str, str, int, int, int] | None:
    """(boundary, field, start, end, total) of an uploader chunk's file part, None otherwise."""
    m = _BOUNDARY.search(content_type)
    head = _FILE_HEAD.search(b"\r\n" + prefix)
    if not m or not head:
        return None
    r = _RANGE_ATTR.search(head.group(0))
    n = _NAME_ATTR.search(head.group(0))
    if not r or not n:
        return None
    name = n.group(1).decode("utf-8", "replace")
    return m.group(1).decode("latin-1"), name, int(r.group(1)), int(r.group(2)), int(r.group(3))


def _append_key(prefix: bytes) -> str:
    m = _KEY_FIELD.search(prefix)
    return m.group(1).decode("utf-8", "replace") if m else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sink", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = SinkServer(args.host, args.port).start()
    print(f"sink: serving on {server.url}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
