"""Small ASGI helpers: request headers, JSON answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

__all__ = ["Send", "header", "respond"]

Send = Callable[[dict[str, Any]], Awaitable[None]]


def header(scope: Mapping[str, Any], name: str) -> str | None:
    """A request header's value (latin-1), or ``None``."""
    key = name.lower().encode("latin-1")
    headers: Iterable[tuple[bytes, bytes]] = scope.get("headers", ())
    for k, v in headers:
        if k == key:
            return v.decode("latin-1")
    return None


async def respond(
    send: Send,
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    content_type: str = "application/json; charset=utf-8",
    close: bool = False,
) -> None:
    raw = [(b"content-type", content_type.encode("latin-1")), (b"content-length", str(len(body)).encode())]
    for k, v in (headers or {}).items():
        if k.lower() in ("content-type", "content-length"):
            continue
        raw.append((k.lower().encode("latin-1"), str(v).encode("latin-1")))
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
