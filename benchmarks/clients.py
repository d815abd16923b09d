"""The clients compared, as command lines: each upload runs as its own process.

``curl-F`` (a multipart form POST, the way most people upload from a shell) is the
*reference client*: every throughput figure is also given as a ratio against it.
``curl-T`` sends the file as a raw body with no multipart framing at all, the most a
client can get out of this machine's loopback.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass

from .servers import Target

__all__ = [
    "CHUNK_SIZE",
    "CLIENTS",
    "LINK_CLIENTS",
    "REFERENCE_CLIENT",
    "Client",
    "engine_streams",
    "select_clients",
]

CHUNK_SIZE = 4 << 20
REFERENCE_CLIENT = "curl-F"
_CURL_W = '{"time_total":%{time_total},"http_code":%{http_code},"size_upload":%{size_upload}}\\n'


@dataclass(frozen=True)
class Client:
    name: str
    label: str
    argv: Callable[[str, Target], list[str] | None]  # None: this client cannot use that target
    # requests in flight at once, for the RSS target (64 MiB + workers x chunk): the engine
    # sends one request at a time per task (nbupload/engine/drivers.py)
    workers: int = 1
    chunk_size: int = 0

    def command(self, path: str, target: Target) -> list[str] | None:
        return self.argv(path, target)


def _peer(client: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.peers", client, *extra]


def _curl() -> str:
    curl = shutil.which("curl")
    if curl is None:
        raise RuntimeError("curl is not installed: apt-get install curl")
    return curl


def _curl_form(path: str, target: Target) -> list[str]:
    return [
        _curl(), "-sS", "--fail", "--noproxy", "*", "-o", "/dev/null", "-w", _CURL_W,
        "-H", "Expect:", "-F", f"file=@{path};type=application/octet-stream", target.upload_url,
    ]  # fmt: skip


def _curl_raw(path: str, target: Target) -> list[str] | None:
    if target.raw_url is None:
        return None
    return [
        _curl(), "-sS", "--fail", "--noproxy", "*", "-o", "/dev/null", "-w", _CURL_W,
        "-H", "Expect:", "-H", "Content-Type: application/octet-stream", "-T", path, target.raw_url,
    ]  # fmt: skip


def _nbupload(
    protocol: str, chunk_size: int = 0, streams: int = 0
) -> Callable[[str, Target], list[str] | None]:
    """An nbupload peer; ``chunk_size``/``streams`` 0: not passed (the engine's defaults)."""

    def argv(path: str, target: Target) -> list[str] | None:
        extra = ["--protocol", protocol]
        if chunk_size:
            extra += ["--chunk-size", str(chunk_size)]
        if streams:
            if engine_streams() is None:
                return None  # this engine has no streams= yet: the row reads n/a
            extra += ["--streams", str(streams)]
        url = target.upload_url
        if protocol == "wcs-append":
            if target.wcs_url is None:
                return None
            url = target.wcs_url
            key = os.path.basename(path)
            extra += [
                "--access-key", target.access_key, "--secret-key", target.secret_key,
                "--scope", f"{target.bucket}:{key}", "--key", key,
            ]  # fmt: skip
        return _peer("nbupload", path, url, *extra)

    return argv


CLIENTS: dict[str, Client] = {
    c.name: c
    for c in [
        Client("nbupload-plain", "nbupload plain", _nbupload("plain")),
        Client("nbupload-uploader", "nbupload uploader (4 MiB chunks)", _nbupload("uploader", CHUNK_SIZE),
               workers=1, chunk_size=CHUNK_SIZE),
        Client("nbupload-wcs", "nbupload wcs-append (4 MiB appends)", _nbupload("wcs-append", CHUNK_SIZE),
               workers=1, chunk_size=CHUNK_SIZE),
        Client("curl-F", "curl -F (multipart)", _curl_form),
        Client("curl-T", "curl -T (raw body, ceiling)", _curl_raw),
        Client("httpx", "httpx files=", lambda p, t: _peer("httpx", p, t.upload_url)),
        Client("toolbelt", "requests + toolbelt MultipartEncoder", lambda p, t: _peer("toolbelt", p, t.upload_url)),
    ]
}  # fmt: skip


#: The link scenarios' clients (benchmarks/links.py): nbupload with its defaults (whatever
#: chunk size and streams the engine picks), with one stream, and what a user writes by hand.
LINK_CLIENTS: dict[str, Client] = {
    c.name: c
    for c in [
        Client("nbupload-uploader", "nbupload uploader (defaults)", _nbupload("uploader")),
        Client("nbupload-uploader-s1", "nbupload uploader, streams=1", _nbupload("uploader", streams=1)),
        Client("nbupload-wcs", "nbupload wcs-append (defaults)", _nbupload("wcs-append")),
        CLIENTS["nbupload-plain"],
        CLIENTS["curl-F"],
        CLIENTS["curl-T"],
        CLIENTS["httpx"],
        CLIENTS["toolbelt"],
        Client("naive", "requests by hand, 4 MiB chunks one after another",
               lambda p, t: _peer("naive", p, t.upload_url, "--chunk-size", str(CHUNK_SIZE))),
    ]
}  # fmt: skip


@functools.cache
def engine_streams() -> int | None:
    """The engine's default number of streams per upload, or None when ``nbupload.upload``
    takes no ``streams=`` (the engine before issue 10: one request in flight per task).

    Read from the signature, so the benchmarks pick the keyword up as soon as it exists;
    a default that is not a number (None: "the engine's setting") is looked up in
    ``EngineConfig``, and taken as 4 (the issue's default) when it cannot be found.
    """
    import dataclasses
    import inspect

    import nbupload

    param = inspect.signature(nbupload.upload).parameters.get("streams")
    if param is None:
        return None
    if isinstance(param.default, int) and param.default > 0:
        return param.default
    config = getattr(nbupload, "EngineConfig", None)
    if config is not None and dataclasses.is_dataclass(config):
        for f in dataclasses.fields(config):
            if f.name == "streams" and isinstance(f.default, int) and f.default > 0:
                return f.default
    return 4


def select_clients(only: str | None, pool: dict[str, Client] | None = None) -> list[Client]:
    """``--only curl-F,httpx`` (or prefixes such as ``nbupload``) -> the clients, in table order."""
    pool = CLIENTS if pool is None else pool
    if not only:
        return list(pool.values())
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = [c for c in pool.values() if any(c.name == w or c.name.startswith(w + "-") for w in wanted)]
    unknown = [w for w in wanted if not any(c.name == w or c.name.startswith(w + "-") for c in pool.values())]
    if unknown:
        raise ValueError(f"unknown client(s) {', '.join(unknown)}; known: {', '.join(pool)}")
    return chosen
