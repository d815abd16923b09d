"""A forward HTTP proxy on loopback, as a company proxy is to a notebook: clients send it
absolute-form requests (``POST http://host:port/path HTTP/1.1``) and it connects to the
target itself. ``route`` maps every target host to one address, so a test can use a host
name the client cannot resolve (``upload.invalid``): only a request that really went
through the proxy arrives. Bodies and answers are framed by ``Content-Length``, which is
all the engine and the reference server use."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit

from .front import LoopbackFront, content_length, read_head, relay, relay_answer, shutdown_and_close

__all__ = ["ForwardProxy"]


class ForwardProxy(LoopbackFront):
    """``http://127.0.0.1:<port>``; ``requests`` holds each proxied request's target URL."""

    thread_name = "forward-proxy"

    def __init__(self, route: tuple[str, int]) -> None:
        self.route = route
        self.requests: list[str] = []
        self._seen = threading.Lock()
        super().__init__()

    def _handle(self, client: socket.socket) -> None:
        self.track(client)
        threading.Thread(target=self._serve, args=(client,), name="forward-proxy-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        buf = bytearray()
        try:
            while True:
                head = read_head(client, buf)
                if head is None:
                    return
                method, target, version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
                parts = urlsplit(target)
                if not parts.scheme:  # not a proxy request
                    client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    return
                with self._seen:
                    self.requests.append(target)
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                rest = head.split(b"\r\n", 1)[1]
                if upstream is None:
                    upstream = socket.create_connection(self.route, timeout=120)
                    self.track(upstream)
                upstream.sendall(f"{method} {path} {version}\r\n".encode("latin-1") + rest)
                if not relay(client, upstream, buf, content_length(head), piece=1 << 20):
                    return
                if not relay_answer(upstream, client, piece=1 << 20):
                    return
        except OSError:
            return
        finally:
            if upstream is not None:
                shutdown_and_close(upstream)
            shutdown_and_close(client)
