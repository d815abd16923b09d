"""Issue 13 §5: the rate caps measured at the server, "within 10 % of the cap over 10 s".

``python -m benchmarks.ratecap [--rate 20MB] [--seconds 10]`` starts the fast sink (its own
process) and uploads, with the engine in this process:

- ``limit_rate``: one file of ``rate x seconds`` bytes, uploader protocol, 4 streams, capped
  with the task's ``limit_rate``;
- ``max_rate``: two such half-size files at once (4 streams each), capped together by the
  engine's ``max_rate``;
- ``plain``: one file, plain protocol, ``limit_rate`` (one request, one connection).

Each figure is the sink's own count of body bytes divided by the time between the first and
the last byte it received (its clock), beside the cap; the target is within 10 % of the cap.
Prints one line per case and exits 1 when a case misses the target.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from nbupload.engine import Engine, EngineConfig
from nbupload.options import parse_rate

from .files import make_dense
from .servers import Target, start_sink

__all__ = ["main", "run_case"]

TOLERANCE = 0.10


def _measure(sink: Target, engine: Engine, files: list[Path], **submit: Any) -> float:
    import httpx

    httpx.post(sink.server.url + "/_sink/reset")
    tasks = [engine.submit(f, sink.upload_url, **submit) for f in files]
    for t in tasks:
        t.wait(600, raise_on_error=True)
    stats = sink.stats()
    span = float(stats["last_byte_at"]) - float(stats["first_byte_at"])
    return float(stats["body_bytes"]) / span


def run_case(name: str, sink: Target, workdir: Path, rate: int, seconds: float) -> dict[str, Any]:
    size = int(rate * seconds)
    config = EngineConfig(journal=False, streams=4)
    if name == "max_rate":
        files = [make_dense(workdir / f"cap-{i}.bin", size // 2) for i in range(2)]
        engine, submit = Engine(config.with_changes(max_rate=rate)), {}
    else:
        files = [make_dense(workdir / "cap.bin", size)]
        engine = Engine(config)
        submit = {"limit_rate": rate, "protocol": "plain" if name == "plain" else "uploader"}
    try:
        measured = _measure(sink, engine, files, **submit)
    finally:
        engine.shutdown(wait=True, timeout=10)
        for f in files:
            f.unlink(missing_ok=True)
    return {"case": name, "cap": rate, "measured": measured, "ratio": measured / rate,
            "met": abs(measured / rate - 1) <= TOLERANCE}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ratecap", description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=parse_rate, default=20_000_000, help="the cap, bytes/s (default 20MB)")
    p.add_argument("--seconds", type=float, default=10.0, help="upload length at the cap (default 10)")
    p.add_argument("--cases", default="limit_rate,max_rate,plain")
    args = p.parse_args(argv)
    sink = start_sink()
    ok = True
    try:
        with tempfile.TemporaryDirectory(prefix="nbupload-ratecap-") as tmp:
            for name in args.cases.split(","):
                r = run_case(name, sink, Path(tmp), args.rate, args.seconds)
                ok &= r["met"]
                cap, got = r["cap"] / 1e6, r["measured"] / 1e6
                verdict = "yes" if r["met"] else "NO"
                print(f"{name:<11} cap {cap:8.2f} MB/s  measured {got:8.2f} MB/s  ({r['ratio']:.3f}x)  "
                      f"within 10 %: {verdict}")  # fmt: skip
    finally:
        sink.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
