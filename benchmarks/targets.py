"""The issue's targets, each checked against a measured figure (printed, never enforced).

"Well ahead" of the Python peers is read as at least 1.5x their median throughput. Peak
RSS of nbupload is held to issue 10's bound, 64 MiB + streams x 1 MiB (the streams the
engine ran with: its ``streams=`` default, 1 before that keyword existed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .clients import CLIENTS

__all__ = ["WELL_AHEAD", "Check", "check_targets"]

MiB = 1 << 20
WELL_AHEAD = 1.5


@dataclass(frozen=True)
class Check:
    figure: str
    value: str
    target: str
    met: bool | None  # None: not measured

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _size(n: int) -> str:
    return f"{n / 2**30:.0f} GiB" if n >= 2**30 else f"{n / MiB:.0f} MiB"


def _rows(results: dict[str, Any], section: str) -> list[dict[str, Any]]:
    return list((results.get(section) or {}).get("rows") or [])


def _median(row: dict[str, Any] | None, key: str) -> float | None:
    if not row or not row.get(key):
        return None
    return float(row[key]["median"])


def _throughput_checks(rows: Sequence[dict[str, Any]], streams: int) -> list[Check]:
    checks: list[Check] = []
    sink_sizes = sorted({r["size"] for r in rows if r["target"] == "sink"})
    for size in sink_sizes:
        by = {r["client"]: r for r in rows if r["target"] == "sink" and r["size"] == size}
        label = f"{size / MiB:.0f} MiB, sink"
        for client, want in (("nbupload-plain", 1.2), ("nbupload-uploader", 1.0)):
            row = by.get(client)
            got = row.get("ratio") if row else None
            checks.append(
                Check(f"{client} / curl -F ({label})", "-" if got is None else f"{got:.2f}x",
                      f">= {want:.1f}x", None if got is None else got >= want)
            )  # fmt: skip
            for peer in ("toolbelt", "httpx"):
                mine, theirs = _median(row, "rate"), _median(by.get(peer), "rate")
                if mine is None or theirs is None or theirs == 0:
                    continue
                r = mine / theirs
                checks.append(
                    Check(f"{client} / {peer} ({label})", f"{r:.2f}x", f">= {WELL_AHEAD}x", r >= WELL_AHEAD)
                )
    for r in rows:
        client = CLIENTS.get(r["client"])
        if client is None or not r["client"].startswith("nbupload") or not r.get("maxrss"):
            continue
        limit = 64 * MiB + streams * MiB
        rss = float(r["maxrss"]["max"])
        checks.append(
            Check(f"peak RSS {r['client']} ({r['size'] / MiB:.0f} MiB, {r['target']})",
                  f"{rss / MiB:.1f} MiB", f"<= {limit / MiB:.0f} MiB", rss <= limit)
        )  # fmt: skip
    return checks


def check_targets(results: dict[str, Any]) -> list[Check]:
    streams = int((results.get("options") or {}).get("streams") or 1)
    checks = _throughput_checks(_rows(results, "throughput"), streams)
    for row in _rows(results, "rss_growth"):
        if row["client"].startswith("nbupload") and row.get("growth") is not None:
            g = float(row["growth"])
            span = f"{_size(row['small'])} -> {_size(row['large'])}"
            checks.append(
                Check(f"RSS growth {span}, {row['client']}", f"{g * 100:+.1f}%", "<= 5%", abs(g) <= 0.05)
            )
    resume = results.get("resume") or {}
    for row in resume.get("rows") or []:
        if row.get("resent") is None:
            continue
        limit = row["workers"] * row["chunk_size"]
        checks.append(
            Check(f"resume re-sent bytes ({row['protocol']})", f"{row['resent'] / MiB:.2f} MiB",
                  f"<= {limit / MiB:.0f} MiB ({row['workers']} x chunk)", row["resent"] <= limit)
        )  # fmt: skip
    cancel = resume.get("cancel") or {}
    if cancel.get("latency"):
        ms = cancel["latency"]["median"] * 1000
        checks.append(Check("cancel latency", f"{ms:.0f} ms", "<= 200 ms", ms <= 200))
    panel = results.get("panel") or {}
    if panel.get("cell"):
        ms = panel["cell"]["median"] * 1000
        checks.append(Check("trivial cell round trip, 4 uploads running", f"{ms:.1f} ms", "< 50 ms", ms < 50))
    if panel.get("messages_per_second_per_task") is not None:
        m = float(panel["messages_per_second_per_task"])
        checks.append(Check("widget messages / s / task", f"{m:.1f}", "<= ~10", m <= 11))
    batch = results.get("batch") or {}
    if batch.get("files_per_s") is not None:
        n = batch.get("files", 0)
        checks.append(
            Check(f"batch of {n} x 1 KiB, files/s", f"{batch['files_per_s']:.0f}", ">= 200",
                  batch["files_per_s"] >= 200)
        )  # fmt: skip
        growth = float(batch["rss_growth"])
        checks.append(
            Check(f"batch of {n} x 1 KiB, RSS growth", f"{growth / MiB:.1f} MiB", "< 50 MiB",
                  growth < 50 * MiB)
        )  # fmt: skip
    if results.get("links"):
        from .links import link_checks

        checks += [Check(**c) for c in link_checks(results["links"])]
    return checks
