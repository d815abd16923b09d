"""Item 5 in one process: pause, resume and cancel a running upload through the Python API.

``python -m benchmarks.control FILE URL STATS_URL [--protocol P] [--chunk-size N] ...``
starts ``nbupload.upload(..., wait=False)``, and once the server (its byte counter,
polled every millisecond or so) holds half the file (or ``--pause-at`` bytes):

1. pauses it and waits for ``paused``, and until the server's byte counter stops moving
   (no new byte for ``QUIET`` seconds; the stop is the last byte's time);
2. resumes it and measures the time until the server counts a new file byte
   ("resume to first new byte", in process: no interpreter start-up);
3. at three quarters (or ``--cancel-at`` bytes more) cancels it and measures the time
   until the task is ``cancelled`` (the cancel latency) and until the server's byte
   counter stops moving.

``--counter reference`` reads the reference server's ``/_nbupload/stats``;
``--counter sink`` the fast sink's ``/_sink/stats`` (body bytes as they arrive, and the
time of the last one, so a stop is timed by the server's own clock: ``time.monotonic``
is system-wide on Linux). ``--streams N`` passes ``streams=N`` (engines after issue 10).

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
QUIET = 0.5  # seconds without a new byte at the server: the upload has stopped


def _stats(stats_url: str) -> dict[str, Any]:
    with _OPENER.open(stats_url, timeout=10) as resp:
        return dict(json.loads(resp.read()))


def server_bytes(stats_url: str, protocol: str, counter: str = "reference") -> int:
    stats = _stats(stats_url)
    if counter == "sink":
        return int(stats["body_bytes"])
    return int(stats["wcs" if protocol == "wcs-append" else "uploader"]["bytes"])


def _wire_stop(args: argparse.Namespace, got: Any, since: float) -> tuple[float, int]:
    """Wait until no byte reaches the server for ``QUIET`` s; (seconds from ``since`` to the
    last byte, bytes then)."""
    last, last_change = got(), time.monotonic()
    while True:
        now_bytes = got()
        if now_bytes != last:
            last, last_change = now_bytes, time.monotonic()
        if time.monotonic() - last_change >= QUIET:
            break
        time.sleep(0.001)
    if args.counter == "sink":  # the sink's own clock for its last byte
        at = _stats(args.stats_url).get("last_byte_at")
        if at is not None:
            last_change = float(at)
    return max(0.0, last_change - since), last


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
    if args.streams:
        kwargs["streams"] = args.streams
    if args.protocol == "wcs-append":
        kwargs.update(access_key=args.access_key, secret_key=args.secret_key, scope=args.scope, key=args.key)
    size = args.size
    base = server_bytes(args.stats_url, args.protocol, args.counter)
    got = lambda: server_bytes(args.stats_url, args.protocol, args.counter) - base
    task = nbupload.upload(args.file, args.url, wait=False, **kwargs)
    out: dict[str, Any] = {"streams": args.streams or None}
    pause_at = args.pause_at or size // 2
    cancel_after = args.cancel_at or size // 4

    _wait_until(lambda: got() >= pause_at, args.timeout)
    t0 = time.monotonic()
    task.pause()
    task.wait(args.timeout)
    out["pause_latency"] = time.monotonic() - t0
    out["pause_state"] = str(task.state)
    if args.counter == "sink":
        out["pause_wire_stop"], _ = _wire_stop(args, got, t0)
    else:
        time.sleep(0.2)  # let the server settle
    before = got()
    t1 = time.monotonic()
    task.resume()
    t_first = _wait_until(lambda: got() > before, args.timeout, 0.0005)
    out["resume_first_byte"] = t_first - t1

    _wait_until(lambda: got() >= before + cancel_after, args.timeout)
    t2 = time.monotonic()
    task.cancel()
    task.wait(args.timeout)
    out["cancel_latency"] = time.monotonic() - t2
    out["cancel_state"] = str(task.state)
    # the wire: when did the server last see a byte of this upload after cancel()?
    out["cancel_wire_stop"], out["server_bytes"] = _wire_stop(args, got, t2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.control")
    p.add_argument("file")
    p.add_argument("url")
    p.add_argument("stats_url")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--protocol", default="uploader")
    p.add_argument("--chunk-size", type=int, default=4 << 20)
    p.add_argument("--streams", type=int, default=0, help="streams= for the upload (0: not passed)")
    p.add_argument("--counter", choices=("reference", "sink"), default="reference", help="who counts bytes")
    p.add_argument("--pause-at", type=int, default=0, help="pause once the server has this many bytes (half)")
    p.add_argument(
        "--cancel-at",
        type=int,
        default=0,
        help="cancel once this many more bytes arrived after resuming (a quarter of the file)",
    )
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
