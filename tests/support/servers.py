"""Tiny stand-in servers for behaviour the reference server does not have on purpose."""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["NonsenseQueryServer", "WithholdingServer", "file_part"]


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


class NonsenseQueryServer:
    """Answers the uploader query with an HTML page (no resume), stores plain uploads."""

    def __init__(self) -> None:
        outer = self
        self.uploads: list[tuple[bytes, str]] = []
        #: every multipart request as ``(body, boundary)`` (several file parts: :func:`file_part`)
        self.bodies: list[tuple[bytes, str]] = []
        self.queries = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

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
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/upload"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(2)

    def __enter__(self) -> NonsenseQueryServer:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WithholdingServer:
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

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

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

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/upload"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="withholding-server", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> WithholdingServer:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
