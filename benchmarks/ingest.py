"""Item 7: how fast the reference server takes bytes in, 1 and 4 uploads at once, vs the sink.

Two clients drive it, each as its own process per upload: ``curl -F`` (a plain multipart
POST from the cheapest client there is, so the server is the limit) and nbupload's
``uploader`` protocol with 4 MiB chunks (the server's resumable path: range writes and
session bookkeeping). The aggregate rate is all bytes over the time from the first upload's
start to the last one's end (client-reported where the client reports it).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .clients import CLIENTS, Client
from .files import make_dense, warm
from .proc import ChildResult, run_child
from .servers import Target, child_env
from .stats import summarize

__all__ = ["run_section"]

MiB = float(1 << 20)
CONCURRENCY = (1, 4)
INGEST_CLIENTS = ("curl-F", "nbupload-uploader")


def _window(child: ChildResult) -> tuple[float, float]:
    if "t0" in child.report and "t1" in child.report:
        return float(child.report["t0"]), float(child.report["t1"])
    end = child.started + child.wall
    if "time_total" in child.report:  # curl: its own transfer time, ending about when it exited
        return end - float(child.report["time_total"]), end
    return child.started, end


def aggregate_once(client: Client, target: Target, paths: list[Path], size: int) -> tuple[float | None, str]:
    """All ``paths`` uploaded at once; (bytes per second, error)."""
    target.reset()
    argvs = [client.command(str(p), target) for p in paths]
    if any(a is None for a in argvs):
        return None, "n/a"
    with ThreadPoolExecutor(len(paths)) as pool:
        children = list(pool.map(lambda a: run_child(a, env=child_env(), timeout=900), argvs))  # type: ignore[arg-type]
    bad = [c.describe_failure() for c in children if not c.ok]
    if bad:
        return None, bad[0]
    if target.is_sink:
        got = int(target.stats()["file_bytes"])
        if got != size * len(paths):
            return None, f"sink received {got} bytes of {size * len(paths)}"
    else:
        assert target.root is not None
        sizes = sorted(p.stat().st_size for p in target.root.rglob("*") if p.is_file() and not
                       any(part.startswith(".") for part in p.relative_to(target.root).parts))  # fmt: skip
        if sizes[-len(paths) :] != [size] * len(paths):
            return None, f"server holds {sizes[-len(paths) :]}, expected {len(paths)} x {size}"
        target.clear_root()
    windows = [_window(c) for c in children]
    span = max(e for _, e in windows) - min(s for s, _ in windows)
    return (size * len(paths) / span if span > 0 else None), ""


def run_section(*, targets: list[Target], workdir: Path, quick: bool, runs: int, preset: dict[str, Any],
                log: Callable[[str], None], **_: Any) -> dict[str, Any]:  # fmt: skip
    from nbupload.units import parse_size

    size = parse_size(str(preset["ingest_size"]))
    paths = [make_dense(workdir / f"ingest-{i}.bin", size) for i in range(max(CONCURRENCY))]
    for p in paths:
        warm(p)
    rows: list[dict[str, Any]] = []
    trials = max(1, runs)
    try:
        for name in INGEST_CLIENTS:
            client = CLIENTS[name]
            for n in CONCURRENCY:
                for target in targets:
                    rates, errors = [], []
                    for _ in range(trials):
                        rate, err = aggregate_once(client, target, paths[:n], size)
                        if rate is None:
                            errors.append(err)
                        else:
                            rates.append(rate)
                    s = summarize(rates)
                    rows.append({"client": name, "concurrency": n, "target": target.name, "size": size,
                                 "rate": s.as_dict() if s else None, "errors": errors})  # fmt: skip
                    what = f"{s.median / MiB:8.1f} MiB/s" if s else f"FAILED {errors[:1]}"
                    log(f"  ingest {name:18} x{n} -> {target.name:9} {what}")
    finally:
        for p in paths:
            p.unlink(missing_ok=True)
    return {"rows": rows, "markdown": _markdown(rows, size, trials)}


def _markdown(rows: list[dict[str, Any]], size: int, trials: int) -> list[str]:
    out = [
        f"Aggregate MiB/s, median (min–max) of {trials} run(s); each upload is a {size / MiB:.0f} MiB file in its "
        "own process.",
        "",
        "| client | uploads at once | reference server | fast sink | reference / sink |",
        "|---|--:|--:|--:|--:|",
    ]
    for name in INGEST_CLIENTS:
        for n in CONCURRENCY:
            by = {r["target"]: r for r in rows if r["client"] == name and r["concurrency"] == n}
            cells = []
            for t in ("reference", "sink"):
                r = by.get(t)
                if r and r["rate"]:
                    d = r["rate"]
                    cells.append(f"{d['median'] / MiB:.0f} ({d['min'] / MiB:.0f}–{d['max'] / MiB:.0f})")
                else:
                    cells.append("failed" if r else "-")
            ref, sink = by.get("reference"), by.get("sink")
            ratio = (f"{ref['rate']['median'] / sink['rate']['median']:.2f}"
                     if ref and sink and ref["rate"] and sink["rate"] else "-")  # fmt: skip
            out.append(f"| {CLIENTS[name].label} | {n} | {cells[0]} | {cells[1]} | {ratio} |")
    return out
