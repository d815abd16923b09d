"""Tiny stand-in servers for behaviour the reference server does not have on purpose.

Each is a :class:`StandInServer` (an ``http.server`` on an ephemeral loopback port, served
from a thread) with a :class:`QuietHandler` of its own; tests elsewhere build more the same way.
"""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

__all__ = ["NonsenseQueryServer", "QuietHandler", "StandInServer", "WithholdingServer", "file_part"]

_S = TypeVar("_S", bound="StandInServer")


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive, as the engine's client expects) and no request log on stderr."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def answer(self, body: bytes, content_type: str | None = None) -> None:
        """A 200 with ``body`` (and its length, so the connection can be kept)."""
        self.send_response(200)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class StandInServer:
    """What every stand-in server shares: serve ``httpd`` from a daemon thread, ``url`` (its
    ``/upload``), :meth:`close`, and use as a context manager that closes it."""

    url: str

    def _serve(self, httpd: ThreadingHTTPServer) -> None:
        httpd.daemon_threads = True
        self.httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}/upload"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name=type(self).__name__, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def __enter__(self: _S) -> _S:  # noqa: PYI019 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def file_part(body: bytes, boundary: str, field: str = "file") -> tuple[bytes, str]:
    """The data and Content-Disposition of the file part ``field`` of a multipart body."""
    delim = b"--" + boundary.encode()
    for part in body.split(delim)[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part[2:].partition(b"\r\n\r\n")
        disp = next(
            (h for h in head.decode().split("\r\n") if h.lower().startswith("content-disposition")), ""
        )
        if f'name="{field}"' in disp and "filename=" in disp:
            return data[:-2], disp
    raise ValueError("no file part")


class NonsenseQueryServer(StandInServer):
    """Answers the uploader query with an HTML page (no resume), stores plain uploads."""

    def __init__(self) -> None:
        outer = self
        self.uploads: list[tuple[bytes, str]] = []
        #: every multipart request as ``(body, boundary)`` (several file parts: :func:`file_part`)
        self.bodies: list[tuple[bytes, str]] = []
        self.queries = 0

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                ctype = self.headers.get("Content-Type", "")
                if ctype.startswith("application/x-www-form-urlencoded"):
                    outer.queries += 1
                    answer = b"<html><body>It works! {not json</body></html>"
                else:
                    boundary = ctype.split("boundary=", 1)[1]
                    outer.bodies.append((body, boundary))
                    with contextlib.suppress(ValueError):  # a session's parts have other names
                        outer.uploads.append(file_part(body, boundary))
                    answer = b'{result:"OK"}'
                self.answer(answer, "text/html")

        self._serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler))


class WithholdingServer(StandInServer):
    """An uploader server that takes every chunk ("OK") but never says the file is complete.

    ``held``: what its query answers report: ``"never"`` nothing (it never assembles the
    file), ``"all"`` every range it received (it assembled it but only the query says so).
    """

    def __init__(self, held: str = "never") -> None:
        from nbupload.protocols import uploader
        from nbupload.protocols.ranges import RangeSet, parse_range_attr

        outer = self
        self.held_mode = held
        self.received = RangeSet()
        self.queries = 0
        self.chunks = 0
        lock = threading.Lock()

        class Handler(QuietHandler):
            def _answer(self, body: bytes) -> None:
                self.answer(body, "application/json")

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                ctype = self.headers.get("Content-Type", "")
                if ctype.startswith("application/x-www-form-urlencoded"):
                    boundary = uploader.parse_query_request(body)
                    with lock:
                        outer.queries += 1
                        held = outer.received if outer.held_mode == "all" else RangeSet()
                    self._answer(uploader.format_query_answer(boundary, {"file": held}))
                    return
                boundary = ctype.split("boundary=", 1)[1]
                _data, disp = file_part(body, boundary)
                start, end, _total = parse_range_attr(disp.split('range="', 1)[1].split('"', 1)[0])
                with lock:
                    outer.chunks += 1
                    outer.received = outer.received.add(start, end)
                self._answer(uploader.format_ok())

        self._serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
