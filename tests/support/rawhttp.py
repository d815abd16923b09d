"""Reading one whole HTTP answer from a raw socket, for tests that write exact request bytes.

An answer may arrive in any number of TCP segments (headers and body apart, the body cut
anywhere); a single ``recv`` holding it all is luck. :func:`read_answer` lets
:mod:`http.client`'s parser read the status line and headers, then exactly ``Content-Length``
body bytes (or the chunks, or up to the close when the answer has neither).
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass, field

__all__ = ["RawResponse", "read_answer"]


@dataclass
class RawResponse:
    """A whole answer: status, headers (lower-cased names), body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> object:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def read_answer(sock: socket.socket, method: str = "POST") -> RawResponse | None:
    """The next whole answer on ``sock``; ``None`` when the server closed or reset the
    connection without a complete one. Waits as long as the socket's timeout allows."""
    response = http.client.HTTPResponse(sock, method=method)
    try:
        response.begin()
        body = response.read()
    except (http.client.RemoteDisconnected, http.client.IncompleteRead, ConnectionResetError):
        return None
    finally:
        response.close()
    return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
