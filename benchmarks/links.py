"""Item 8: the link scenarios: every client over links that look like the real world.

Each scenario puts the link emulator (:mod:`benchmarks.link`, its own process) between
the clients and the fast sink, except ``loopback`` which talks to the sink directly:

========================  ===============================================================
``loopback``              no emulator
``late40``                the server's answers arrive 40 ms late (downstream delay only)
``flow40-rtt20``          each connection paced to 40 MB/s, 20 ms round trip
``flow40-rtt80``          each connection paced to 40 MB/s, 80 ms round trip
``shared100-rtt20``       100 MB/s shared by all connections, 20 ms round trip
========================  ===============================================================

All scenarios run in one run, side by side, with the same file and the same rotation of
clients as the loopback throughput section (:func:`benchmarks.throughput.run_matrix`);
ratios are against ``curl -F`` in the same scenario. Before the clients, the emulator's
own ceiling on this machine is measured (``curl -T`` through a plain relay and through a
20 ms delay line, one flow and four at once), so a figure near it is known to be the
emulator's. Then pause and cancel are timed over slow links (5 MiB/s and 512 KiB/s per
flow, 20 ms round trip) with :mod:`benchmarks.control`, reading the sink's own clock for
the last byte that arrived.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .clients import CLIENTS, LINK_CLIENTS, REFERENCE_CLIENT, Client, engine_streams
from .files import make_dense, make_sparse, warm
from .ingest import aggregate_once
from .link import LinkShape
from .proc import run_child
from .servers import ServerProcess, Target, _spawn, child_env
from .stats import summarize
from .throughput import run_matrix, summarize_samples

__all__ = ["CONTROL_LINKS", "SCENARIOS", "LinkTarget", "Scenario", "link_checks", "run_section", "start_link"]

MiB = float(1 << 20)
MB = 1e6
RSS_BASE = 64 << 20  # the target: 64 MiB + streams x 1 MiB
RSS_PER_STREAM = 1 << 20
PAUSE_TARGET = 0.200


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    shape: LinkShape | None  # None: straight to the sink

    @property
    def per_flow_paced(self) -> bool:
        return bool(self.shape and self.shape.flow_rate)

    @property
    def rtt(self) -> float:
        return (self.shape.up_delay + self.shape.down_delay) if self.shape else 0.0


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("loopback", "loopback (no emulator)", None),
    Scenario("late40", "answers 40 ms late", LinkShape(down_delay=0.040)),
    Scenario("flow40-rtt20", "40 MB/s per flow, 20 ms RTT", LinkShape.symmetric(0.020, flow_rate=40e6)),
    Scenario("flow40-rtt80", "40 MB/s per flow, 80 ms RTT", LinkShape.symmetric(0.080, flow_rate=40e6)),
    Scenario(
        "shared100-rtt20",
        "100 MB/s shared by all flows, 20 ms RTT",
        LinkShape.symmetric(0.020, shared_rate=100e6),
    ),
)

#: Links the pause and cancel latencies are measured on (the issue's 5 MiB/s and 512 KiB/s).
CONTROL_LINKS: tuple[Scenario, ...] = (
    Scenario("slow5m-rtt20", "5 MiB/s per flow, 20 ms RTT", LinkShape.symmetric(0.020, flow_rate=5 * MiB)),
    Scenario(
        "slow512k-rtt20", "512 KiB/s per flow, 20 ms RTT", LinkShape.symmetric(0.020, flow_rate=512 * 1024)
    ),
)


@dataclass
class LinkTarget(Target):
    """The sink seen through a link emulator: uploads go through ``link``; counters are read
    from the sink directly (never delayed). ``stop()`` ends the emulator only."""

    link: ServerProcess | None = None
    scenario: Scenario | None = None

    def stop(self) -> None:
        if self.link is not None:
            self.link.stop()


def _link_argv(upstream: str, shape: LinkShape) -> list[str]:
    argv = [sys.executable, "-m", "benchmarks.link", "--upstream", upstream.removeprefix("http://")]
    if shape.flow_rate:
        argv += ["--flow-rate", repr(shape.flow_rate)]
    if shape.shared_rate:
        argv += ["--shared-rate", repr(shape.shared_rate)]
    return [*argv, "--up-delay", repr(shape.up_delay), "--down-delay", repr(shape.down_delay),
            "--handshake", repr(shape.handshake)]  # fmt: skip


def start_link(sink: Target, scenario: Scenario) -> LinkTarget:
    """The scenario's emulator (its own process) in front of ``sink``; loopback: no emulator."""
    if scenario.shape is None:
        url, link = sink.server.url, None
    else:
        link = _spawn(_link_argv(sink.server.url, scenario.shape), child_env())
        url = link.url
    return LinkTarget(
        scenario.name, sink.server, url + "/upload", url + "/upload", url, link=link, scenario=scenario
    )


# ---------------------------------------------------------------------------------- ceiling
def _proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc), None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def measure_ceiling(
    sink: Target, path: Path, size: int, trials: int, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """``curl -T`` through a plain relay and a 20 ms delay line: what the emulator can pass."""
    rows = []
    for name, shape in (("relay", LinkShape()), ("delay line, 20 ms RTT", LinkShape.symmetric(0.020))):
        target = start_link(sink, Scenario(name, name, shape))
        try:
            for flows in (1, 4):
                rates, cpus, errors = [], [], []
                for _ in range(trials):
                    assert target.link is not None
                    cpu0 = _proc_cpu(target.link.pid)
                    rate, err = aggregate_once(CLIENTS["curl-T"], target, [path] * flows, size)
                    cpu1 = _proc_cpu(target.link.pid)
                    if rate is None:
                        errors.append(err)
                        continue
                    rates.append(rate)
                    if cpu0 is not None and cpu1 is not None:
                        cpus.append((cpu1 - cpu0) / (size * flows / 1e9))
                s, c = summarize(rates), summarize(cpus)
                rows.append({"link": name, "flows": flows, "rate": s.as_dict() if s else None,
                             "cpu_per_gb": c.as_dict() if c else None, "errors": errors})  # fmt: skip
                log(
                    f"  link ceiling {name:22} x{flows}: "
                    + (f"{s.median / MB:7.0f} MB/s" if s else f"FAILED {errors[:1]}")
                    + (f", emulator CPU {c.median:.2f} s per GB" if c else "")
                )
        finally:
            target.stop()
    return rows


# ---------------------------------------------------------------------------------- pause / cancel
def control_over_link(
    sink: Target,
    scenario: Scenario,
    path: Path,
    size: int,
    streams: int | None,
    trials: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Pause, resume and cancel an uploader task going over a slow link (sink's byte counter)."""
    assert scenario.shape is not None and scenario.shape.flow_rate
    rate = scenario.shape.flow_rate * (streams or 1)
    step = int(
        max(256 * 1024, rate * 1.5)
    )  # about 1.5 s of upload before pausing, and again before cancelling
    target = start_link(sink, scenario)
    stats_url = sink.server.url + "/_sink/stats"
    argv = [sys.executable, "-m", "benchmarks.control", str(path), target.upload_url, stats_url,
            "--size", str(size), "--counter", "sink", "--pause-at", str(step), "--cancel-at", str(step),
            "--timeout", "300"]  # fmt: skip
    if streams:
        argv += ["--streams", str(streams)]
    results, errors = [], []
    try:
        for _ in range(trials):
            sink.reset()
            child = run_child(argv, env=child_env(), timeout=900)
            if not child.ok or not child.report:
                errors.append(child.describe_failure())
                log(f"  control {scenario.name}: FAILED {errors[-1]}")
                continue
            r = child.report
            results.append(r)
            log(
                f"  control {scenario.name:15} pause {r['pause_latency'] * 1000:6.0f} ms (wire "
                f"{r['pause_wire_stop'] * 1000:6.0f} ms), cancel {r['cancel_latency'] * 1000:6.0f} ms (wire "
                f"{r['cancel_wire_stop'] * 1000:6.0f} ms), "
                f"resume -> byte {r['resume_first_byte'] * 1000:.0f} ms"
            )
    finally:
        target.stop()
    out: dict[str, Any] = {"scenario": scenario.name, "label": scenario.label, "streams": streams,
                           "step": step, "trials": results, "errors": errors}  # fmt: skip
    for key in (
        "pause_latency",
        "pause_wire_stop",
        "resume_first_byte",
        "cancel_latency",
        "cancel_wire_stop",
    ):
        s = summarize(r[key] for r in results)
        out[key] = s.as_dict() if s else None
    return out


# ---------------------------------------------------------------------------------- the section
def _chosen_scenarios(names: Sequence[str] | None) -> list[Scenario]:
    return [s for s in SCENARIOS if not names or s.name in names]


def run_section(*, targets: list[Target], workdir: Path, quick: bool, runs: int, preset: dict[str, Any],
                log: Callable[[str], None], warmup: bool = True, clients: Sequence[Client] | None = None,
                scenarios: Sequence[str] | None = None, **_: Any) -> dict[str, Any]:  # fmt: skip
    from nbupload.units import parse_size

    sink = next(t for t in targets if t.name == "sink")
    size = parse_size(str(preset["link_size"]))
    chosen = _chosen_scenarios(scenarios)
    clients = list(clients or LINK_CLIENTS.values())
    streams = engine_streams()
    log(
        "  engine: "
        + (f"streams= default {streams}" if streams else "no streams= keyword (one request in flight)")
    )
    path = make_dense(workdir / f"link-{size}.bin", size)
    warm(path)
    link_targets: list[LinkTarget] = []
    control_path = make_sparse(workdir / "link-control.bin", 1 << 30)
    try:
        ceiling = measure_ceiling(sink, path, size, 1 if quick else 3, log)
        for sc in chosen:
            link_targets.append(start_link(sink, sc))
        log(f"  {len(clients)} clients x {len(chosen)} scenarios x {runs} runs, {size / MiB:.0f} MiB file")
        samples = run_matrix(clients, link_targets, [(size, path)], runs, warmup=warmup, log=log)
        controls = []
        for sc in CONTROL_LINKS[:1] if quick else CONTROL_LINKS:
            controls.append(
                control_over_link(sink, sc, control_path, 1 << 30, streams, 1 if quick else min(runs, 3), log)
            )
    finally:
        for t in link_targets:
            t.stop()
        path.unlink(missing_ok=True)
        control_path.unlink(missing_ok=True)
    order = {sc.name: i for i, sc in enumerate(chosen)}
    rows = sorted(summarize_samples(samples, clients), key=lambda r: order.get(r["target"], 99))
    section: dict[str, Any] = {
        "size": size,
        "runs": runs,
        "warmup": warmup,
        "streams": streams,
        "scenarios": [
            {"name": sc.name, "label": sc.label, "shape": sc.shape.describe() if sc.shape else "none"}
            for sc in chosen
        ],
        "clients": [{"name": c.name, "label": c.label} for c in clients],
        "ceiling": ceiling,
        "rows": rows,
        "samples": [s.as_dict() for s in samples],
        "control": controls,
    }
    section["markdown"] = render(section)
    return section


# ---------------------------------------------------------------------------------- targets
def _row_target(row: dict[str, Any], scenario: str, streams: int | None) -> tuple[str, bool | None] | None:
    """The issue's target for this (client, scenario) figure, if it has one: (text, met)."""
    ratio = row.get("ratio")
    sc = next((s for s in SCENARIOS if s.name == scenario), None)
    want: float | None = None
    if row["client"] == "nbupload-uploader":
        want = 2.5 if sc and sc.per_flow_paced else 1.0
    elif row["client"] == "nbupload-plain" and scenario == "loopback":
        want = 1.2
    elif row["client"] == "nbupload-wcs" and sc and abs(sc.rtt - 0.020) < 1e-9:
        want = 0.9
    if want is None:
        return None
    return f">= {want:.1f}x", (None if ratio is None else ratio >= want)


def _rss_limit(client: str, streams: int | None) -> int:
    n = 1 if client.endswith("-s1") or not streams else streams
    return RSS_BASE + n * RSS_PER_STREAM


def link_checks(section: dict[str, Any]) -> list[dict[str, Any]]:
    """Every link target as (figure, value, target, met) dicts, in the order of the tables."""
    streams = section.get("streams")
    labels = {s["name"]: s["label"] for s in section.get("scenarios", [])}
    out: list[dict[str, Any]] = []
    for row in section.get("rows", []):
        t = _row_target(row, row["target"], streams)
        if t is None:
            continue
        ratio = row.get("ratio")
        figure = f"{row['client']} / curl -F ({labels.get(row['target'], row['target'])})"
        value = "-" if ratio is None else f"{ratio:.2f}x"
        out.append({"figure": figure, "value": value, "target": t[0], "met": t[1]})
    peaks: dict[str, float] = {}
    for row in section.get("rows", []):
        if row["client"].startswith("nbupload") and row.get("maxrss"):
            peaks[row["client"]] = max(peaks.get(row["client"], 0.0), float(row["maxrss"]["max"]))
    for client, peak in peaks.items():
        limit = _rss_limit(client, streams)
        out.append({"figure": f"peak RSS {client} (all link scenarios)", "value": f"{peak / MiB:.1f} MiB",
                    "target": f"<= {limit / MiB:.0f} MiB", "met": peak <= limit})  # fmt: skip
    for c in section.get("control", []):
        for key, what in (
            ("pause_latency", "pause → paused"),
            ("pause_wire_stop", "pause → last byte at server"),
            ("cancel_latency", "cancel → cancelled"),
            ("cancel_wire_stop", "cancel → last byte at server"),
        ):
            d = c.get(key)
            out.append({"figure": f"{what} ({c['label']}, streams {c['streams'] or 1})",
                        "value": "-" if not d else f"{d['median'] * 1000:.0f} ms", "target": "< 200 ms",
                        "met": None if not d else d["median"] < PAUSE_TARGET})  # fmt: skip
    return out


# ---------------------------------------------------------------------------------- Markdown
def _mb(d: dict[str, float] | None) -> tuple[str, str]:
    if not d:
        return "-", "-"
    return f"{d['median'] / MB:.1f}", f"{d['min'] / MB:.1f}–{d['max'] / MB:.1f}"


def _ms(d: dict[str, float] | None) -> str:
    if not d:
        return "-"
    return f"{d['median'] * 1000:.0f} ms ({d['min'] * 1000:.0f}–{d['max'] * 1000:.0f})"


def _met(met: bool | None) -> str:
    return "n/a" if met is None else ("yes" if met else "**no**")


def render(section: dict[str, Any]) -> list[str]:
    size, streams = section["size"], section["streams"]
    labels = {s["name"]: s["label"] for s in section["scenarios"]}
    out = [
        f"File {size / MiB:.0f} MiB (page cache), to the fast sink, through the link emulator "
        f"(`benchmarks/link.py`, its own process). Each figure: median of {section['runs']} run(s)"
        + (" after a warm-up" if section["warmup"] else " (no warm-up)")
        + "; rates in **MB/s (10^6 bytes/s)**, the unit the links are given in; ratios against the median of "
        f"`{REFERENCE_CLIENT}` in the same scenario. Engine: "
        + (
            f"`streams=` default {streams}."
            if streams
            else "no `streams=` keyword (one request in flight per task)."
        )
        + " nbupload rows use the engine's defaults (chunk size, streams) unless the label says otherwise.",
        "",
        "#### Summary: MB/s (× curl -F)",
        "",
        "| client | " + " | ".join(labels[s["name"]] for s in section["scenarios"]) + " |",
        "|---|" + "--:|" * len(section["scenarios"]),
    ]
    by = {(r["client"], r["target"]): r for r in section["rows"]}
    for c in section["clients"]:
        cells = []
        for sc in section["scenarios"]:
            r = by.get((c["name"], sc["name"]))
            if r is None:
                cells.append("n/a (no `streams=`)" if c["name"].endswith("-s1") and not streams else "n/a")
                continue
            med, _ = _mb(r.get("rate"))
            ratio = f" ({r['ratio']:.2f}x)" if r.get("ratio") is not None else ""
            cells.append(f"{med}{ratio}" if r.get("rate") else "failed")
        out.append(f"| {c['label']} | " + " | ".join(cells) + " |")
    out.append("")
    for sc in section["scenarios"]:
        out += [
            f"#### {sc['label']} (`{sc['name']}`: {sc['shape']})",
            "",
            (
                f"| client | MB/s (median) | min–max | × {REFERENCE_CLIENT} (min–max) | target "
                "| peak RSS MiB | runs |"
            ),
            "|---|--:|--:|--:|--:|--:|--:|",
        ]
        for r in section["rows"]:
            if r["target"] != sc["name"]:
                continue
            med, span = _mb(r.get("rate"))
            ratio = (
                f"{r['ratio']:.2f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f})"
                if r.get("ratio") is not None
                else "-"
            )
            t = _row_target(r, sc["name"], streams)
            target = f"{t[0]}: {_met(t[1])}" if t else ""
            rss = f"{r['maxrss']['max'] / MiB:.1f}" if r.get("maxrss") else "-"
            ok = r["runs"] - len(r["failures"])
            runs = f"{ok}/{r['runs']}" + (f" ({r['failures'][0][:80]})" if r["failures"] else "")
            out.append(f"| {r['label']} | {med} | {span} | {ratio} | {target} | {rss} | {runs} |")
        out.append("")
    out += [
        "#### The emulator's own ceiling on this machine",
        "",
        (
            "`curl -T` through the emulator with no pacing, to the sink (median): what the emulator passes "
            "while sharing the machine's cores with curl and the sink (on a busy machine all three starve), "
            "and the emulator process's own CPU per GB (from /proc), which the machine's load changes much "
            "less: its ceiling on one free core. The scenarios above need at most 4 x 40 = 160 MB/s."
        ),
        "",
        (
            "| emulator | 1 flow, MB/s | 4 flows at once, MB/s | emulator CPU s per GB (4 flows) "
            "| one free core passes |"
        ),
        "|---|--:|--:|--:|--:|",
    ]
    for name in dict.fromkeys(r["link"] for r in section["ceiling"]):
        cells = []
        for flows in (1, 4):
            r = next((x for x in section["ceiling"] if x["link"] == name and x["flows"] == flows), None)
            cells.append(f"{r['rate']['median'] / MB:.0f}" if r and r["rate"] else "failed")
        four = next((x for x in section["ceiling"] if x["link"] == name and x["flows"] == 4), None)
        cpu = (four or {}).get("cpu_per_gb")
        per_core = f"{1000 / cpu['median']:.0f} MB/s" if cpu and cpu["median"] > 0 else "-"
        cpu_text = f"{cpu['median']:.2f}" if cpu else "-"
        out.append(f"| {name} | {cells[0]} | {cells[1]} | {cpu_text} | {per_core} |")
    out += [
        "",
        "#### Pause and cancel over slow links",
        "",
        (
            "`benchmarks/control.py` in its own process: an uploader task over the link; after about 1.5 s "
            "of upload `task.pause()`, then `task.resume()`, then after as much again `task.cancel()`. "
            "*State*: the call until the task's state is `paused`/`cancelled`. *Wire*: the call until the "
            "last byte of the upload reached the sink (the sink's own clock; no byte for 0.5 s after it), "
            "which includes the link's one-way delay (10 ms) and what the emulator and the socket buffers "
            "still held. Median (min–max)."
        ),
        "",
        (
            "| link | streams | pause → paused | pause → last byte | resume → first new byte "
            "| cancel → cancelled | cancel → last byte | target |"
        ),
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for c in section["control"]:
        if not c["trials"]:
            out.append(
                f"| {c['label']} | {c['streams'] or 1} | failed: {(c['errors'] or ['?'])[0][:80]} | | | | | |"
            )
            continue
        out.append(
            f"| {c['label']} | {c['streams'] or 1} | {_ms(c['pause_latency'])} | "
            f"{_ms(c['pause_wire_stop'])} | {_ms(c['resume_first_byte'])} | {_ms(c['cancel_latency'])} | "
            f"{_ms(c['cancel_wire_stop'])} | < 200 ms |"
        )
    out += ["", "Clients:", ""]
    out += [f"- `{c['name']}`: {c['label']}" for c in section["clients"]]
    return out
