"""Requests of both protocols built byte by byte, so any field can carry anything."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from hostile_net import RawResponse, form_part, http_request, multipart, raw_exchange

from nbupload.protocols import uploader as up
from nbupload.protocols import wcs
from nbupload.protocols.multipart import new_boundary

__all__ = [
    "append",
    "append_body",
    "chunk_body",
    "make_token",
    "plain_body",
    "post_multipart",
    "query",
    "upload_resumable",
]

Address = tuple[str, int]


def post_multipart(path: str, boundary: str | bytes, body: bytes, **kw: object) -> bytes:
    bnd = boundary if isinstance(boundary, str) else boundary.decode("latin-1")
    return http_request("POST", path, [("Content-Type", f"multipart/form-data; boundary={bnd}")], body, **kw)


def query(address: Address, boundary: str) -> RawResponse | None:
    headers, body = up.prepare_query(boundary)
    return raw_exchange(
        address, http_request("POST", "/upload", [("Content-Type", headers["Content-Type"])], body)
    )


def chunk_body(
    boundary: str,
    filename: bytes,
    data: bytes,
    start: int,
    total: int,
    *,
    name: bytes = b"file",
    fields: Sequence[tuple[bytes, bytes]] = (),
    range_attr: bytes | None = None,
) -> bytes:
    rng = range_attr if range_attr is not None else f"{start}-{start + len(data)}/{total}".encode()
    parts = [form_part(b'form-data; name="' + k + b'"', v) for k, v in fields]
    parts.append(
        form_part(
            b'form-data; name="' + name + b'"; filename="' + filename + b'"; range="' + rng + b'"',
            data,
            "application/octet-stream",
        )
    )
    return multipart(boundary, parts)


def plain_body(boundary: str, filename: bytes, data: bytes, *, name: bytes = b"file") -> bytes:
    return multipart(
        boundary,
        [
            form_part(
                b'form-data; name="' + name + b'"; filename="' + filename + b'"',
                data,
                "application/octet-stream",
            )
        ],
    )


def upload_resumable(
    address: Address, filename: bytes, data: bytes, chunk: int, boundary: str | None = None
) -> list[RawResponse | None]:
    """Query, then every chunk in order; all answers."""
    boundary = boundary or new_boundary()
    answers = [query(address, boundary)]
    for start in range(0, max(len(data), 1), chunk):
        piece = data[start : start + chunk]
        body = chunk_body(boundary, filename, piece, start, len(data))
        answers.append(raw_exchange(address, post_multipart("/upload", boundary, body)))
    return answers


def make_token(
    scope: str, *, access_key: str, secret_key: str, deadline: int | str | None = None, **extra: object
) -> str:
    policy = {
        "scope": scope,
        "deadline": deadline if deadline is not None else int(time.time() * 1000) + 600_000,
        **extra,
    }
    return wcs.make_token(access_key, secret_key, json.dumps(policy))


def append_body(
    boundary: str,
    token: str | bytes,
    data: bytes,
    *,
    key: str | bytes | None = None,
    token_first: bool = True,
    extra: Sequence[bytes] = (),
) -> bytes:
    def enc(v: str | bytes) -> bytes:
        return v if isinstance(v, bytes) else v.encode("utf-8", "surrogatepass")

    fields = [form_part(b'form-data; name="token"', enc(token))]
    if key is not None:
        fields.append(form_part(b'form-data; name="key"', enc(key)))
    fields += list(extra)
    file_part = form_part(b'form-data; name="file"; filename="f.bin"', data, "application/octet-stream")
    return multipart(boundary, [*fields, file_part] if token_first else [file_part, *fields])


def append(
    address: Address,
    position: int | str,
    token: str | bytes,
    data: bytes,
    *,
    key: str | bytes | None = None,
    token_first: bool = True,
) -> RawResponse | None:
    boundary = new_boundary()
    body = append_body(boundary, token, data, key=key, token_first=token_first)
    return raw_exchange(address, post_multipart(f"/append/{position}", boundary, body))
