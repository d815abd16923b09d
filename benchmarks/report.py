"""Results as JSON (everything, every sample) and Markdown (the tables people read)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .clients import CLIENTS, REFERENCE_CLIENT
from .machine import machine_line
from .targets import Check

__all__ = ["render_markdown", "update_doc", "write_results"]

MiB = float(1 << 20)


def _rng(d: dict[str, float] | None, scale: float = 1.0, fmt: str = "{:.0f}") -> tuple[str, str]:
    if not d:
        return "-", "-"
    return fmt.format(d["median"] / scale), f"{fmt.format(d['min'] / scale)}–{fmt.format(d['max'] / scale)}"


def _size(n: int) -> str:
    return f"{n / 2**30:.0f} GiB" if n >= 2**30 else f"{n / MiB:.0f} MiB"


def _throughput_md(rows: Sequence[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    keys = []
    for r in rows:
        if (r["size"], r["target"]) not in keys:
            keys.append((r["size"], r["target"]))
    for size, target in keys:
        out += [
            f"#### {_size(size)} file, {target} server",
            "",
            f"| client | MiB/s (median) | min–max | × {REFERENCE_CLIENT} "
            "(min–max) | peak RSS MiB | CPU s/GiB, upload "
            "| CPU s/GiB, process | runs |",
            "|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for r in rows:
            if (r["size"], r["target"]) != (size, target):
                continue
            med, span = _rng(r.get("rate"), MiB)
            if r.get("ratio") is not None:
                ratio = f"{r['ratio']:.2f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f})"
            else:
                ratio = "-"
            rss, _ = _rng(r.get("maxrss"), MiB, "{:.1f}")
            cpu, _ = _rng(r.get("cpu_per_gib"), 1.0, "{:.2f}")
            cpu_proc, _ = _rng(r.get("cpu_process_per_gib"), 1.0, "{:.2f}")
            ok = r["runs"] - len(r["failures"])
            runs = f"{ok}/{r['runs']}" + (f" ({r['failures'][0]})" if r["failures"] else "")
            out.append(f"| {r['label']} | {med} | {span} | {ratio} | {rss} | {cpu} | {cpu_proc} | {runs} |")
        out.append("")
    return out


def _rss_md(section: dict[str, Any]) -> list[str]:
    rows = section.get("rows") or []
    if not rows:
        return []
    small, large = _size(rows[0]["small"]), _size(rows[0]["large"])
    out = [f"| client | peak RSS, {small} | peak RSS, {large} | growth |", "|---|--:|--:|--:|"]
    for r in rows:
        a = f"{r['rss_small'] / MiB:.1f} MiB" if r.get("rss_small") else "-"
        b = f"{r['rss_large'] / MiB:.1f} MiB" if r.get("rss_large") else "-"
        g = f"{r['growth'] * 100:+.1f}%" if r.get("growth") is not None else "-"
        if r.get("errors"):
            g += f" ({r['errors'][0]})"
        out.append(f"| {r['label']} | {a} | {b} | {g} |")
    return [*out, ""]


def _generic_md(section: dict[str, Any]) -> list[str]:
    """A section that brings its own Markdown lines (resume, panel, ingest)."""
    return list(section.get("markdown") or []) + ([""] if section.get("markdown") else [])


def render_markdown(results: dict[str, Any], checks: Sequence[Check]) -> str:
    m = results["machine"]
    out = [
        "# nbupload benchmark results",
        "",
        f"- Machine: {machine_line(m)}",
        f"- Run: {results['started_at']} → {results['finished_at']} (UTC), command `{results['command']}`",
        f"- Load average (1/5/15 min) before: {results['load_before']}, after: {results['load_after']}"
        + (f" — {results['busy_note']}" if results.get("busy_note") else ""),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v),
        f"- Each figure: median of {results['options']['runs']} run(s)"
        + (" after a warm-up" if results["options"].get("warmup", True) else " (no warm-up)")
        + ", clients run "
        "side by side in rotated order, each as its own process; ratios are against the median of "
        f"`{REFERENCE_CLIENT}` in the same table.",
        "",
        "## Targets",
        "",
        "| figure | measured | target | met |",
        "|---|--:|--:|:-:|",
    ]
    for c in checks:
        met = "n/a" if c.met is None else ("yes" if c.met else "**no**")
        out.append(f"| {c.figure} | {c.value} | {c.target} | {met} |")
    out.append("")
    sections = [
        ("throughput", "## 1–3. Single-stream throughput, peak RSS, CPU", _throughput_md),
        ("rss_growth", "## 2. Peak RSS growth with file size (sparse files, fast sink)", _rss_md),
        ("resume", "## 4–5. Resume waste, cancel latency, time to first new byte", _generic_md),
        ("panel", "## 6. Panel cost", _generic_md),
        ("ingest", "## 7. Reference server ingest", _generic_md),
        ("links", "## 8. Link scenarios (the link emulator, `benchmarks/link.py`)", _generic_md),
        ("batch", "## 9. A batch of many small files (`--sections batch`)", _generic_md),
    ]
    for key, title, render in sections:
        section = results.get(key)
        if section is None:
            continue
        body = render(section["rows"]) if key == "throughput" else render(section)
        note = section.get("note")
        out += [title, ""] + ([note, ""] if note else []) + body
    if not any(key in results for key in ("throughput", "rss_growth")):  # links only: no CPU columns
        return "\n".join(out).rstrip() + "\n"
    out += [
        "CPU s/GiB, upload: user + system CPU of the upload "
        "itself (Python clients measure it around the upload "
        "call, all threads; curl's is its whole process). "
        "CPU s/GiB, process: the whole process from `wait4`, "
        "interpreter start-up and imports included. Peak RSS: the client process's own, from `wait4`.",
        "",
        "Clients:",
        "",
    ]
    out += [f"- `{name}`: {c.label}" for name, c in CLIENTS.items()]
    return "\n".join(out).rstrip() + "\n"


def write_results(
    out_dir: Path, results: dict[str, Any], checks: Sequence[Check], stem: str = "latest"
) -> tuple[Path, Path]:
    """``STEM.json`` and ``STEM.md`` in ``out_dir`` (overwritten: git keeps the history);
    the link scenarios alone write ``links.*`` so they never overwrite the loopback run's."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = dict(results, targets=[c.as_dict() for c in checks])
    json_path = out_dir / f"{stem}.json"
    md_path = out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(data, indent=1, sort_keys=False, default=str) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(results, checks), encoding="utf-8")
    return md_path, json_path


def update_doc(
    doc: Path, markdown: str, start: str = "<!-- latest-results -->", end: str = "<!-- /latest-results -->"
) -> bool:
    """Put ``markdown`` (minus its title) between the markers in ``doc``; False if they are missing."""
    text = doc.read_text(encoding="utf-8")
    a, b = text.find(start), text.find(end)
    if a < 0 or b < a:
        return False
    body = markdown.split("\n", 1)[1].lstrip("\n") if markdown.startswith("# ") else markdown
    body = body.replace("\n## ", "\n### ").replace("\n#### ", "\n##### ")
    doc.write_text(text[: a + len(start)] + "\n" + body.rstrip() + "\n" + text[b:], encoding="utf-8")
    return True
