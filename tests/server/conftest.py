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
from tests.support import rawhttp
from tests.support.rawhttp import RawResponse

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
    client: httpx.Client,
    url: str,
    boundary: str,
    data: bytes,
    start: int,
    end: int,
    *,
    name: str = "file",
    filename: str = "data.bin",
    fields: dict[str, str] | None = None,
) -> httpx.Response:
    enc = uploader.prepare_chunk(
        boundary, BytesSource(data), start, end, name=name, filename=filename, fields=fields
    )
    return client.post(url, content=iter(enc), headers=enc.headers)


def answer(r: httpx.Response) -> dict:
    return json.loads(r.content)


def token(scope: str, *, deadline_ms: int | str | None = None, ak: str = AK, sk: str = SK, **policy) -> str:
    obj = {
        "scope": scope,
        "deadline": deadline_ms if deadline_ms is not None else int(time.time() * 1000) + 3600_000,
    }
    obj.update(policy)
    return wcs.make_token(ak, sk, json.dumps(obj))


def append(
    client: httpx.Client, base: str, position: int, data: bytes, tok: str, key: str | None = None, **kw
) -> wcs.AppendAnswer:
    enc = wcs.prepare_append(tok, BytesSource(data), key=key, **kw)
    r = client.post(f"{base}/append/{position}", content=iter(enc), headers=enc.headers)
    return wcs.process_append_answer(r.status_code, r.headers.items(), r.content)


def raw_request(
    host: str, port: int, head: bytes, body: bytes, *, close_early: bool = False
) -> RawResponse | None:
    """Send bytes on a fresh connection and read the whole answer; with ``close_early`` hang up
    at once (RST) without reading."""
    with socket.create_connection((host, port), timeout=60) as s:
        s.sendall(head + body)
        if close_early:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return None
        return rawhttp.read_answer(s)


def wait_for(predicate, timeout: float = 60.0) -> bool:
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
    """One whole HTTP answer from ``sock`` as ``(status, headers, body)`` (``100 Continue``
    skipped); :func:`tests.support.rawhttp.read_answer` reads it, as many ``recv`` as it takes."""
    answer = rawhttp.read_answer(sock)
    if answer is None:
        raise ConnectionError("the connection closed before a whole answer")
    return answer.status, answer.headers, answer.body
