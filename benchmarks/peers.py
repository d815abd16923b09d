"""The Python clients, each run as its own process by the harness.

``python -m benchmarks.peers CLIENT FILE URL [options]`` uploads FILE and prints one JSON
line: ``t0``/``t1`` (``time.monotonic`` right around the upload, after imports), ``cpu``
(user+system seconds spent between them, all threads), ``status`` and ``size``. A failed
upload exits non-zero with the reason on stderr.

Each peer is written the way its documentation recommends for large files:

- ``httpx``: ``httpx.post(url, files={"file": f})`` (httpx streams file fields);
- ``toolbelt``: requests with requests-toolbelt's streaming ``MultipartEncoder``;
- ``nbupload``: ``nbupload.upload(path, url, protocol=..., chunk_size=..., streams=...)``
  (``streams`` only when given: engines before issue 10 do not take it);
- ``naive``: what a user writes by hand with requests: read 4 MiB, ``requests.post`` it as
  a form with its offset, next chunk, one after another, a new connection each time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["PEERS", "main"]


def _vm_hwm() -> int:
    """This process's peak RSS (bytes) from /proc; 0 where there is no /proc."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _httpx(args: argparse.Namespace) -> Callable[[], Any]:
    import httpx

    def run() -> Any:
        with open(args.file, "rb") as f:
            r = httpx.post(
                args.url,
                files={"file": (os.path.basename(args.file), f, "application/octet-stream")},
                timeout=None,
            )
        r.raise_for_status()
        return r.status_code

    return run


def _toolbelt(args: argparse.Namespace) -> Callable[[], Any]:
    import requests
    from requests_toolbelt.multipart.encoder import MultipartEncoder

    def run() -> Any:
        with open(args.file, "rb") as f:
            enc = MultipartEncoder(
                fields={"file": (os.path.basename(args.file), f, "application/octet-stream")}
            )
            r = requests.post(args.url, data=enc, headers={"Content-Type": enc.content_type}, timeout=None)
        r.raise_for_status()
        return r.status_code

    return run


def _naive(args: argparse.Namespace) -> Callable[[], Any]:
    import requests

    chunk = args.chunk_size or 4 << 20

    def run() -> Any:
        name = os.path.basename(args.file)
        total = os.path.getsize(args.file)
        offset = 0
        with open(args.file, "rb") as f:
            while offset < total:
                data = f.read(chunk)
                if not data:
                    raise RuntimeError(f"{args.file} ended at {offset} of {total} bytes")
                fields = {"offset": str(offset), "total": str(total)}
                part = {"file": (name, data, "application/octet-stream")}
                r = requests.post(args.url, data=fields, files=part, timeout=None)
                r.raise_for_status()
                offset += len(data)
        return offset

    return run


def _nbupload(args: argparse.Namespace) -> Callable[[], Any]:
    from nbupload import upload  # the lazy import of the API (engine, httpx) happens here, like the peers'

    kwargs: dict[str, Any] = {"protocol": args.protocol}
    if args.chunk_size:
        kwargs["chunk_size"] = args.chunk_size
    if args.streams:
        kwargs["streams"] = args.streams
    for name in ("access_key", "secret_key", "scope", "key"):
        value = getattr(args, name)
        if value:
            kwargs[name] = value

    def run() -> Any:
        task = upload(args.file, args.url, wait=True, **kwargs)  # raises if it failed
        if str(task.state) != "done":
            raise RuntimeError(f"upload ended {task.state}: {task.error}")
        return str(task.state)

    return run


PEERS: dict[str, Callable[[argparse.Namespace], Callable[[], Any]]] = {
    "httpx": _httpx,
    "naive": _naive,
    "nbupload": _nbupload,
    "toolbelt": _toolbelt,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers")
    parser.add_argument("client", choices=sorted(PEERS))
    parser.add_argument("file")
    parser.add_argument("url")
    parser.add_argument("--protocol", default="plain")
    parser.add_argument("--chunk-size", type=int, default=0)
    parser.add_argument("--streams", type=int, default=0, help="nbupload: streams= (0: not passed)")
    parser.add_argument("--access-key")
    parser.add_argument("--secret-key")
    parser.add_argument("--scope")
    parser.add_argument("--key")
    args = parser.parse_args(argv)
    run = PEERS[args.client](args)
    cpu0 = _cpu()
    t0 = time.monotonic()
    try:
        status = run()
    except Exception as exc:  # the harness reports it; a traceback helps nobody here
        print(f"{args.client}: upload failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    t1 = time.monotonic()
    cpu = _cpu() - cpu0
    size = os.path.getsize(args.file)
    print(
        json.dumps({"t0": t0, "t1": t1, "cpu": cpu, "vm_hwm": _vm_hwm(), "status": str(status), "size": size})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
