"""Tiny stand-in servers for behaviour the reference server does not have on purpose."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["NonsenseQueryServer", "file_part"]


def file_part(body: bytes, boundary: str, field: str = "file") -> tuple[bytes, str]:
    """The data and Content-Disposition of the file part ``field`` of a multipart body."""
    delim = b"--" + boundary.encode()
    for part in body.split(delim)[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part[2:].partition(b"\r\n\r\n")
        disp = next((l for l in head.decode().split("\r\n") if l.lower().startswith("content-disposition")), "")
        if f'name="{field}"' in disp and "filename=" in disp:
            return data[:-2], disp
    raise ValueError("no file part")


class NonsenseQueryServer:
    """Answers the uploader query with an HTML page (no resume), stores plain uploads."""

    def __init__(self) -> None:
        outer = self
        self.uploads: list[tuple[bytes, str]] = []
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
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(2)

    def __enter__(self) -> NonsenseQueryServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
