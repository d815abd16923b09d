"""Item 5 in one process: pause, resume and cancel a running upload through the Python API.

``python -m benchmarks.control FILE URL STATS_URL [--protocol P] [--chunk-size N] ...``
starts ``nbupload.upload(..., wait=False)``, and once the server (its
``/_nbupload/stats`` counters, polled every millisecond or so) holds half the file:

1. pauses it and waits for ``paused``;
2. resumes it and measures the time until the server counts a new file byte
   ("resume to first new byte", in process: no interpreter start-up);
3. at three quarters cancels it and measures the time until the task is ``cancelled``
   (the cancel latency) and until the server's byte counter stops moving.

Prints one JSON line. Run as its own process so the harness stays out of its GIL.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from typing import Any

__all__ = ["main"]

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def server_bytes(stats_url: str, protocol: str) -> int:
    with _OPENER.open(stats_url, timeout=10) as resp:
        stats = json.loads(resp.read())
    return int(stats["wcs" if protocol == "wcs-append" else "uploader"]["bytes"])


def _wait_until(pred: Any, timeout: float, step: float = 0.001) -> float:
    end = time.monotonic() + timeout
    while True:
        if pred():
            return time.monotonic()
        if time.monotonic() > end:
            raise TimeoutError("the upload did not get there in time")
        time.sleep(step)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import nbupload

    kwargs: dict[str, Any] = {"protocol": args.protocol, "chunk_size": args.chunk_size}
    if args.protocol == "wcs-append":
        kwargs.update(access_key=args.access_key, secret_key=args.secret_key, scope=args.scope, key=args.key)
    size = args.size
    base = server_bytes(args.stats_url, args.protocol)
    got = lambda: server_bytes(args.stats_url, args.protocol) - base  # noqa: E731
    task = nbupload.upload(args.file, args.url, wait=False, **kwargs)
    out: dict[str, Any] = {}

    _wait_until(lambda: got() >= size // 2, args.timeout)
    t0 = time.monotonic()
    task.pause()
    task.wait(args.timeout)
    out["pause_latency"] = time.monotonic() - t0
    out["pause_state"] = str(task.state)
    time.sleep(0.2)  # let the server settle
    before = got()
    t1 = time.monotonic()
    task.resume()
    t_first = _wait_until(lambda: got() > before, args.timeout, 0.0005)
    out["resume_first_byte"] = t_first - t1

    _wait_until(lambda: got() >= (size * 3) // 4, args.timeout)
    at_cancel = got()
    t2 = time.monotonic()
    task.cancel()
    task.wait(args.timeout)
    out["cancel_latency"] = time.monotonic() - t2
    out["cancel_state"] = str(task.state)
    # the wire: when did the server last see a byte of this upload after cancel()?
    last, last_change = at_cancel, t2
    while True:
        now_bytes = got()
        if now_bytes != last:
            last, last_change = now_bytes, time.monotonic()
        if time.monotonic() - last_change >= 0.3:
            break
        time.sleep(0.001)
    out["cancel_wire_stop"] = last_change - t2
    out["server_bytes"] = last
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.control")
    p.add_argument("file")
    p.add_argument("url")
    p.add_argument("stats_url")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--protocol", default="uploader")
    p.add_argument("--chunk-size", type=int, default=4 << 20)
    p.add_argument("--access-key")
    p.add_argument("--secret-key")
    p.add_argument("--scope")
    p.add_argument("--key")
    p.add_argument("--timeout", type=float, default=120.0)
    args = p.parse_args(argv)
    try:
        out = measure(args)
    except Exception as exc:
        print(f"control: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
