"""``python -m benchmarks``: run the suite, print the machine and the targets, write results."""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nbupload.units import parse_size

from .clients import CLIENTS, LINK_CLIENTS, Client, engine_streams
from .files import make_dense
from .machine import describe_machine, load_average, machine_line
from .report import update_doc, write_results
from .servers import REPO_ROOT, Target, set_bench_home, start_reference, start_sink
from .targets import check_targets

__all__ = ["DEFAULT_SECTIONS", "SECTIONS", "build_parser", "main"]

DEFAULT_SECTIONS = ("throughput", "rss", "resume", "panel", "ingest")
# links and batch: only when asked (--links, --sections links, --sections batch)
SECTIONS = (*DEFAULT_SECTIONS, "links", "batch")
QUICK = {"sizes": "4MiB", "runs": 1, "rss_sizes": "4MiB,16MiB", "resume_size": "32MiB",
         "panel_size": "64MiB", "ingest_size": "16MiB", "link_size": "8MiB"}  # fmt: skip
FULL = {"sizes": "256MiB,1GiB", "runs": 5, "rss_sizes": "256MiB,4GiB", "resume_size": "256MiB",
        "panel_size": "1GiB", "ingest_size": "256MiB", "link_size": "256MiB"}  # fmt: skip


def _sizes(text: str) -> list[int]:
    try:
        return [parse_size(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _one_size(text: str) -> str:
    """A size, validated; kept as text (the sections parse it)."""
    try:
        if parse_size(text) <= 0:
            raise ValueError(f"size must be positive: {text!r}")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _csv(choices: Sequence[str]):  # type: ignore[no-untyped-def]
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)}; choose from {', '.join(choices)}")
        return items

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="nbupload against curl and Python peers, side by side (see docs/benchmarks.md).",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, 1 run: a smoke test, not a measurement")
    p.add_argument(
        "--runs", type=int, help="measured runs per figure after the warm-up (default 5; --quick 1)"
    )
    p.add_argument("--sizes", type=_sizes, help="throughput file sizes (default 256MiB,1GiB)")
    p.add_argument(
        "--rss-sizes", type=_sizes, help="the two sizes of the RSS growth run (default 256MiB,4GiB)"
    )
    p.add_argument(
        "--resume-size", type=_one_size, help="file size of the resume and cancel runs (default 256MiB)"
    )
    p.add_argument("--panel-size", type=_one_size, help="file size of the panel runs (default 1GiB)")
    p.add_argument(
        "--ingest-size", type=_one_size, help="file size of each upload in the ingest runs (default 256MiB)"
    )
    p.add_argument(
        "--link-size", type=_one_size, help="file size of the link scenarios (default 256MiB; --quick 8MiB)"
    )
    p.add_argument("--only", help="clients, comma-separated (names or prefixes, e.g. nbupload,curl-F)")
    p.add_argument("--servers", type=_csv(("sink", "reference")), default=["sink", "reference"])
    p.add_argument(
        "--sections",
        type=_csv(SECTIONS),
        default=list(DEFAULT_SECTIONS),
        help=f"of {', '.join(SECTIONS)} (default: all but links)",
    )
    p.add_argument(
        "--links",
        action="store_true",
        help="only the link scenarios (= --sections links): results go to links.md/links.json",
    )
    p.add_argument(
        "--scenarios",
        type=_csv([s.name for s in _scenarios()]),
        help="link scenarios, comma-separated (default: all): " + ", ".join(s.name for s in _scenarios()),
    )
    p.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results", help="results directory")
    p.add_argument("--workdir", type=Path, help="where the big temporary files go (default: a new temp dir)")
    p.add_argument("--update-docs", action="store_true", help="also put the tables into docs/benchmarks.md")
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up round (smoke tests only)")
    return p


def _scenarios():  # type: ignore[no-untyped-def]
    from .links import SCENARIOS

    return SCENARIOS


def _select(only: str | None, sections: Sequence[str]) -> tuple[list[Client], list[Client]]:
    """(clients of the loopback sections, clients of the link scenarios) for ``--only``; a name
    must be known to one of the two lists."""
    wanted = [w.strip() for w in (only or "").split(",") if w.strip()]
    if "links" not in sections:
        pools = [CLIENTS]
    else:
        pools = [LINK_CLIENTS] if list(sections) == ["links"] else [CLIENTS, LINK_CLIENTS]
    known = {name for pool in pools for name in pool}
    unknown = [w for w in wanted if not any(n == w or n.startswith(w + "-") for n in known)]
    if unknown:
        raise ValueError(f"unknown client(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")

    def pick(pool: dict[str, Client]) -> list[Client]:
        if not wanted:
            return list(pool.values())
        return [c for c in pool.values() if any(c.name == w or c.name.startswith(w + "-") for w in wanted)]

    return pick(CLIENTS), pick(LINK_CLIENTS)


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def run(args: argparse.Namespace) -> dict[str, Any]:
    preset = dict(QUICK if args.quick else FULL)
    if args.links:
        args.sections = ["links"]
    for name in ("resume_size", "panel_size", "ingest_size", "link_size"):
        value = getattr(args, name)
        if value:
            preset[name] = value
    runs = args.runs if args.runs is not None else int(preset["runs"])
    sizes = args.sizes or _sizes(str(preset["sizes"]))
    rss_sizes = args.rss_sizes or _sizes(str(preset["rss_sizes"]))
    if len(rss_sizes) != 2 or not all(rss_sizes) or not all(sizes):
        raise SystemExit("python -m benchmarks: --rss-sizes takes two sizes, and every size must be positive")
    if runs < 1:
        raise SystemExit("python -m benchmarks: --runs must be at least 1")
    try:
        clients, link_clients = _select(args.only, args.sections)
    except ValueError as exc:
        raise SystemExit(f"python -m benchmarks: {exc}") from None
    links_only = args.sections == ["links"]
    link_warmup = not (args.no_warmup or args.quick)  # --quick links: a smoke run, no warm-up round
    machine = describe_machine()
    results: dict[str, Any] = {
        "command": "python -m benchmarks " + shlex.join(sys.argv[1:] if args.argv is None else args.argv),
        "machine": machine,
        "started_at": _now(),
        "load_before": load_average(),
        "options": {"runs": runs, "warmup": link_warmup if links_only else not args.no_warmup,
                    "sizes": sizes, "rss_sizes": rss_sizes, "quick": args.quick,
                    "clients": [c.name for c in clients], "servers": args.servers, "sections": args.sections,
                    "resume_size": preset["resume_size"], "panel_size": preset["panel_size"],
                    "ingest_size": preset["ingest_size"], "link_size": preset["link_size"],
                    "scenarios": args.scenarios, "streams": engine_streams()},
    }  # fmt: skip
    _log(f"machine: {machine_line(machine)}")
    _log(f"load average before: {results['load_before']}")
    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="nbupload-bench-")) if own_workdir else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    set_bench_home(workdir / "nbupload-home")
    targets: list[Target] = []
    t_start = time.monotonic()
    try:
        sink = start_sink()
        targets.append(sink)
        if "reference" in args.servers and not links_only:
            targets.append(start_reference(workdir / "server-root"))
        chosen = [t for t in targets if t.name in args.servers]
        if "throughput" in args.sections:
            from .throughput import run_matrix, summarize_samples

            _log(
                f"== throughput: {len(clients)} clients x {len(chosen)} "
                f"servers x {len(sizes)} sizes x {runs} runs"
            )
            files = [(size, make_dense(workdir / f"data-{size}.bin", size)) for size in sizes]
            samples = run_matrix(clients, chosen, files, runs, warmup=not args.no_warmup, log=_log)
            for _, path in files:
                path.unlink(missing_ok=True)
            results["throughput"] = {
                "rows": summarize_samples(samples, clients),
                "samples": [s.as_dict() for s in samples],
            }
        if "rss" in args.sections:
            from .rss import run_rss_growth

            _log(f"== rss growth: {rss_sizes[0]} -> {rss_sizes[1]} bytes, sparse files, sink")
            results["rss_growth"] = run_rss_growth(
                clients, sink, workdir, rss_sizes[0], rss_sizes[1], log=_log
            )
        if "links" in args.sections:
            from . import links

            _log(f"== links: {', '.join(args.scenarios or [s.name for s in links.SCENARIOS])}")
            results["links"] = links.run_section(
                targets=targets, workdir=workdir, quick=args.quick, runs=runs, preset=preset, log=_log,
                warmup=link_warmup, clients=link_clients, scenarios=args.scenarios,
            )  # fmt: skip
        extra = {"resume": "resume", "panel": "panel", "ingest": "ingest", "batch": "batch"}
        for section, module in extra.items():
            if section not in args.sections:
                continue
            _log(f"== {section}")
            mod = __import__(f"benchmarks.{module}", fromlist=["run_section"])
            results[section] = mod.run_section(
                targets=targets, workdir=workdir, quick=args.quick, runs=runs, preset=preset, log=_log
            )
    finally:
        for t in targets:
            t.stop()
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    results["finished_at"] = _now()
    results["elapsed"] = time.monotonic() - t_start
    results["load_after"] = load_average()
    cores = machine.get("cores") or 1
    before = results["load_before"][0] if results["load_before"] else 0.0
    results["busy_note"] = (
        f"the machine was busy before the run (1-min load {before} on {cores} cores): figures are noisier"
        if before > 0.5 * cores
        else f"the machine was quiet before the run (1-min load {before} on {cores} cores)"
    )
    return results


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: servers stopped, big temp files removed


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    args.argv = None if argv is None else list(argv)
    results = run(args)
    checks = check_targets(results)
    links_only = args.sections == ["links"]
    md, js = write_results(args.out, results, checks, stem="links" if links_only else "latest")
    width = max((len(c.figure) for c in checks), default=10)
    print(f"machine: {machine_line(results['machine'])}")
    print(f"load average before {results['load_before']}, after {results['load_after']}")
    for c in checks:
        met = "n/a" if c.met is None else ("met" if c.met else "MISSED")
        print(f"{c.figure:<{width}}  {c.value:>12}  target {c.target:<24} {met}")
    print(f"results: {md} and {js}")
    if args.update_docs:
        doc = REPO_ROOT / "docs" / "benchmarks.md"
        marker = "link-results" if links_only else "latest-results"
        if update_doc(doc, md.read_text(encoding="utf-8"), f"<!-- {marker} -->", f"<!-- /{marker} -->"):
            print(f"updated {doc}")
        else:
            print(f"{doc}: no <!-- {marker} --> markers, not updated", file=sys.stderr)
    return 0
