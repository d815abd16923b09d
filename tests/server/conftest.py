"""Fixtures for the reference server tests: a real server on a loopback port, and helpers
that build requests with the project's own protocol layer."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from nbupload.protocols import uploader, wcs
from nbupload.protocols.multipart import BytesSource
from nbupload.server import ServerHandle, start_server

AK, SK = "test-ak", "test-sk-do-not-log"
SEED_BOUNDARY = "----WebKitFormBoundaryaXBly1C8VXJFfgdS"


@pytest.fixture
def server(tmp_path) -> Iterator[ServerHandle]:
    root = tmp_path / "root"
    with start_server(root, credentials={AK: SK}) as handle:
        yield handle


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as c:
        yield c


def data_of(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-looking test bytes."""
    block = bytes((i * 131 + seed * 17 + (i >> 8)) & 0xFF for i in range(65536))
    return (block * (size // len(block) + 1))[:size]


def query(client: httpx.Client, url: str, boundary: str) -> uploader.QueryAnswer:
    headers, body = uploader.prepare_query(boundary)
    r = client.post(url, content=body, headers=headers)
    return uploader.process_query_answer(r.status_code, r.content, boundary)


def send_chunk(
    client: httpx.Client, url: str, boundary: str, data: bytes, start: int, end: int, *,
    name: str = "file", filename: str = "data.bin", fields: dict[str, str] | None = None,
) -> httpx.Response:
    enc = uploader.prepare_chunk(boundary, BytesSource(data), start, end, name=name, filename=filename, fields=fields)
    return client.post(url, content=iter(enc), headers=enc.headers)


def answer(r: httpx.Response) -> dict:
    return json.loads(r.content)


def token(scope: str, *, deadline_ms: int | str | None = None, ak: str = AK, sk: str = SK, **policy) -> str:
    obj = {"scope": scope, "deadline": deadline_ms if deadline_ms is not None else int(time.time() * 1000) + 3600_000}
    obj.update(policy)
    return wcs.make_token(ak, sk, json.dumps(obj))


def append(
    client: httpx.Client, base: str, position: int, data: bytes, tok: str, key: str | None = None, **kw
) -> wcs.AppendAnswer:
    enc = wcs.prepare_append(tok, BytesSource(data), key=key, **kw)
    r = client.post(f"{base}/append/{position}", content=iter(enc), headers=enc.headers)
    return wcs.process_append_answer(r.status_code, r.headers.items(), r.content)


def raw_request(host: str, port: int, head: bytes, body: bytes, *, close_early: bool = False) -> bytes:
    """Send bytes on a fresh connection (``head`` should say ``Connection: close``) and read
    the whole answer; with ``close_early`` hang up at once (RST) without reading."""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(head + body)
        if close_early:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return b""
        chunks = []
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            chunks.append(piece)
        return b"".join(chunks)


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def tree(root) -> list[str]:
    """Every path under ``root`` (relative), internal dirs included."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, n), root))
    return sorted(out)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one whole HTTP answer from ``sock``: the head, then exactly Content-Length body
    bytes (as many ``recv`` calls as it takes); ``100 Continue`` interim answers are skipped."""
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            piece = sock.recv(65536)
            if not piece:
                raise ConnectionError(f"connection closed before the answer's head: {buf!r}")
            buf += piece
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        if status != 100:
            break
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    while len(buf) < length:
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError(f"connection closed after {len(buf)} of {length} body bytes")
        buf += piece
    return status, headers, buf[:length]
