"""Load on the reference server as deployed: ``nbupload serve --workers 2``, many uploads at once.

``python -m benchmarks.server_load [--quick] [--uploads N] [--max-size SIZE] [--json]``

Starts ``nbupload serve --workers 2`` on a temp root, then runs N concurrent uploads (default
64; ``--quick``: 16 up to 4 MiB), half DCloud uploader sessions (1 MiB chunks), half WCS
append objects (4 MiB appends), sizes spread logarithmically from 1 KiB to 64 MiB. Every
request goes on a new connection, so the kernel hands the chunks of one session to either
worker. Files are streamed from disk (never held whole). Reports aggregate MB/s, p50/p99
answer latency per request, the workers' peak RSS, how many requests each worker answered,
and checks every stored file: lost (missing), corrupted (sha256 differs), duplicated (extra
or leftover files, size differs) must all be 0. Figures, not assertions: speed depends on
the machine; ``tests/server/test_server_load.py`` runs the short version and checks the counts.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from nbupload.protocols import uploader, wcs
from nbupload.protocols.multipart import FileSource
from nbupload.units import format_size, parse_size

AK, SK = "load-ak", "load-sk-not-a-secret"
UPLOADER_CHUNK = 1 << 20
WCS_APPEND = 4 << 20


@dataclass
class Report:
    uploads: int
    bytes: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    lost: int = 0
    corrupted: int = 0
    duplicated: int = 0
    failed_requests: int = 0
    peak_rss: int = 0
    per_worker: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def q(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else 0.0

        return {
            "uploads": self.uploads,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 2),
            "MB_per_s": round(self.bytes / self.seconds / 1e6, 1),
            "requests": len(lat),
            "p50_ms": round(q(0.50), 1),
            "p99_ms": round(q(0.99), 1),
            "peak_worker_rss_MiB": round(self.peak_rss / 2**20, 1),
            "requests_per_worker": {str(k): v for k, v in sorted(self.per_worker.items())},
            "lost": self.lost,
            "corrupted": self.corrupted,
            "duplicated": self.duplicated,
            "failed_requests": self.failed_requests,
        }


class Served:
    """``nbupload serve --workers N`` in a child process."""

    def __init__(self, root: Path, workers: int, creds: Path) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nbupload",
                "serve",
                "--root",
                str(root),
                "--port",
                "0",
                "--workers",
                str(workers),
                "--credentials-file",
                str(creds),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        m = re.match(r"nbupload: serving on (\S+) ", line)
        if not m:
            self.stop()
            raise RuntimeError(f"nbupload serve did not start: {line!r}")
        self.url = m.group(1)

    def workers(self) -> list[psutil.Process]:
        try:
            kids = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []
        return [k for k in kids if "resource_tracker" not in " ".join(k.cmdline())]

    def rss(self) -> int:
        total = 0
        for w in self.workers() or [psutil.Process(self.proc.pid)]:  # --workers 1: one process
            with contextlib.suppress(psutil.NoSuchProcess):
                total += w.memory_info().rss
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def sizes(n: int, smallest: int, largest: int) -> list[int]:
    """``n`` sizes spread logarithmically over ``[smallest, largest]`` (plus a little jitter)."""
    if n == 1:
        return [largest]
    ratio = math.log(largest / smallest)
    return [int(smallest * math.exp(ratio * i / (n - 1))) + (i * 37) % 1000 for i in range(n)]


def make_file(path: Path, size: int, seed: int) -> str:
    """Write ``size`` pseudo-random bytes in pieces; their sha256."""
    h = hashlib.sha256()
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    with open(path, "wb") as f:
        left, i = size, 0
        while left:
            piece = (bytes([i & 0xFF]) + block[1:])[: min(left, len(block))]
            f.write(piece)
            h.update(piece)
            left -= len(piece)
            i += 1
    return h.hexdigest()


def _timed_post(
    url: str, content: Any, headers: dict[str, str], report: Report, lock: threading.Lock
) -> httpx.Response:
    # a new connection each time: either worker may take it (plain HTTP: no TLS context to build)
    with httpx.Client(timeout=300, verify=False) as client:
        t0 = time.perf_counter()
        r = client.post(url, content=content, headers=headers)
        took = time.perf_counter() - t0
    with lock:
        report.latencies.append(took)
        if r.status_code != 200:
            report.failed_requests += 1
    return r


def upload_uploader(base: str, path: Path, name: str, report: Report, lock: threading.Lock) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        src = FileSource(fd)
        boundary = "----load" + os.urandom(12).hex()
        for start in range(0, max(src.size, 1), UPLOADER_CHUNK):
            end = min(start + UPLOADER_CHUNK, src.size)
            enc = uploader.prepare_chunk(boundary, src, start, end, filename=name)
            _timed_post(base + "/upload", iter(enc), dict(enc.headers), report, lock)
    finally:
        os.close(fd)


def upload_wcs(base: str, path: Path, name: str, tok: str, report: Report, lock: threading.Lock) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        src = FileSource(fd)
        for start in range(0, max(src.size, 1), WCS_APPEND):
            length = min(WCS_APPEND, src.size - start)
            enc = wcs.prepare_append(tok, src, start, length, key=name)
            _timed_post(f"{base}/append/{start}", iter(enc), dict(enc.headers), report, lock)
    finally:
        os.close(fd)


def _per_worker(base: str, pids: set[int]) -> dict[int, int]:
    """Requests each worker answered (asked on fresh connections until every worker spoke)."""
    seen: dict[int, int] = {}
    for _ in range(400):
        with httpx.Client(timeout=30) as client:
            stats = client.get(base + "/_nbupload/stats").json()
        seen[stats["pid"]] = stats["total"]["requests"]
        if pids <= set(seen):
            break
    return seen


def run(
    uploads: int, smallest: int, largest: int, workers: int = 2, concurrency: int | None = None
) -> Report:
    with tempfile.TemporaryDirectory(prefix="nbupload-load-") as tmp:
        tmpdir = Path(tmp)
        src_dir, root = tmpdir / "src", tmpdir / "root"
        src_dir.mkdir()
        creds = tmpdir / "creds"
        creds.write_text(f"{AK}:{SK}\n")
        os.chmod(creds, 0o600)
        plan = []
        for i, size in enumerate(sizes(uploads, smallest, largest)):
            name = f"f{i:03d}.bin"
            plan.append((i % 2 == 0, name, size, make_file(src_dir / name, size, i)))
        tok = wcs.make_token(
            AK, SK, json.dumps({"scope": "bkt", "deadline": int(time.time() * 1000) + 3600_000})
        )
        report = Report(uploads=uploads, bytes=sum(p[2] for p in plan), seconds=0.0)
        lock = threading.Lock()
        served = Served(root, workers, creds)
        try:
            deadline = time.monotonic() + 60
            while len(served.workers()) < workers and time.monotonic() < deadline:
                time.sleep(0.05)
            _per_worker(served.url, {w.pid for w in served.workers()})  # every worker answers: ready
            base = _per_worker(served.url, {w.pid for w in served.workers()})
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.2):
                    report.peak_rss = max(report.peak_rss, served.rss())

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t0 = time.perf_counter()

            def one(item: tuple[bool, str, int, str]) -> None:
                is_uploader, name, _, _ = item
                if is_uploader:
                    upload_uploader(served.url, src_dir / name, name, report, lock)
                else:
                    upload_wcs(served.url, src_dir / name, name, tok, report, lock)

            with ThreadPoolExecutor(concurrency or uploads) as pool:
                list(pool.map(one, plan))
            report.seconds = time.perf_counter() - t0
            stop.set()
            sampler.join()
            after = _per_worker(served.url, {w.pid for w in served.workers()})
            # minus the stats requests themselves: what each worker answered of the load
            report.per_worker = {pid: n - base.get(pid, 0) for pid, n in after.items()}
        finally:
            served.stop()
        expected = set()
        for is_uploader, name, size, digest in plan:
            stored = root / name if is_uploader else root / "bkt" / name
            expected.add(stored)
            if not stored.is_file():
                report.lost += 1
                continue
            if stored.stat().st_size != size:
                report.duplicated += 1
            h = hashlib.sha256()
            with open(stored, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            if h.hexdigest() != digest:
                report.corrupted += 1
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in (".wcs",)]
            for n in filenames:
                p = Path(dirpath) / n
                if p.suffix == ".part" or (".partial" not in p.parts and p not in expected):
                    report.duplicated += 1  # a leftover partial file or a file nobody uploaded
        return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.server_load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="16 uploads up to 4 MiB")
    parser.add_argument("--uploads", type=int, help="concurrent uploads (default 64)")
    parser.add_argument("--max-size", type=parse_size, help="largest upload (default 64MiB)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    uploads = args.uploads or (16 if args.quick else 64)
    largest = args.max_size or ((4 << 20) if args.quick else (64 << 20))
    report = run(uploads, 1024, largest, workers=args.workers)
    out = report.as_dict()
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(
            f"server load: {uploads} concurrent uploads (uploader and WCS), 1 KiB..{format_size(largest)}, "
            f"serve --workers {args.workers}"
        )
        print(f"  {format_size(report.bytes)} in {out['seconds']} s: {out['MB_per_s']} MB/s aggregate")
        print(f"  {out['requests']} requests: p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms per answer")
        print(
            f"  workers' peak RSS (sum): {out['peak_worker_rss_MiB']} MiB; requests per worker "
            f"{out['requests_per_worker']}"
        )
        print(
            f"  lost {report.lost}, corrupted {report.corrupted}, duplicated {report.duplicated}, "
            f"failed requests {report.failed_requests}"
        )
    bad = report.lost + report.corrupted + report.duplicated + report.failed_requests
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
