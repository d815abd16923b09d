"""Pure formatting of task snapshots: segment geometry, HTML rows, plain-text lines.

Nothing here imports ipywidgets, so consoles, nbconvert and the tests share exactly the
text and geometry the panel shows. The bar is drawn from ``snapshot.ranges`` (what the
server acknowledged), not from a percentage, so out-of-order chunks and resumed holes
are visible as separate segments.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ..engine.state import TaskSnapshot, TaskState
from ..protocols.ranges import RangeSet
from ..units import format_duration, format_rate, format_size

__all__ = [
    "BAR_CSS",
    "Segment",
    "bar_html",
    "css_token",
    "error_html",
    "error_text",
    "progress_html",
    "segments",
    "state_html",
    "stats_text",
    "summary_text",
    "text_bar",
    "text_line",
]

#: Classes the panel and the browser test rely on (kept here so both agree).
BAR_CSS = """
.nbupload-bar{position:relative;height:14px;min-width:160px;width:100%;background:#e6e6e6;
  border-radius:3px;overflow:hidden}
.nbupload-segment{position:absolute;top:0;bottom:0;background:#2f81f7}
.nbupload-bar[data-state="done"] .nbupload-segment{background:#2da44e}
.nbupload-bar[data-state="paused"] .nbupload-segment{background:#bf8700}
.nbupload-bar[data-state="failed"] .nbupload-segment{background:#cf222e}
.nbupload-progress{display:flex;align-items:center;gap:0.8em;width:100%}
.nbupload-progress .nbupload-bar{flex:1 1 auto}
.nbupload-stats{white-space:nowrap;min-width:22em}
.nbupload-error{color:#cf222e;font-weight:600}
.nbupload-warning{color:#9a6700}
.nbupload-state{font-variant:small-caps}
.nbupload-name{font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
"""


@dataclass(frozen=True)
class Segment:
    """One acknowledged interval as fractions of the bar: ``left`` and ``width`` in [0, 1]."""

    start: int
    end: int
    left: float
    width: float


def segments(ranges: RangeSet, total: int, *, min_width: float = 0.0, max_segments: int = 200) -> list[Segment]:
    """Geometry of the acknowledged ranges on a bar of length 1.

    ``min_width`` keeps tiny ranges visible; above ``max_segments`` neighbouring ranges
    closest together are merged so the HTML stays small for files with thousands of chunks.
    """
    if total <= 0:
        return []
    spans = list(ranges.clip(total).spans)
    while len(spans) > max_segments:
        # merge across the smallest gap, keeping the picture honest at bar resolution
        gaps = [(spans[i + 1][0] - spans[i][1], i) for i in range(len(spans) - 1)]
        _, i = min(gaps)
        spans[i : i + 2] = [(spans[i][0], spans[i + 1][1])]
    out = []
    for start, end in spans:
        left = start / total
        width = max((end - start) / total, min_width)
        width = min(width, 1.0 - left) if left < 1.0 else 0.0
        out.append(Segment(start, end, left, width))
    return out


_TOKEN = re.compile(r"[^A-Za-z0-9_-]+")


def css_token(text: str) -> str:
    """``text`` made safe as (part of) a CSS class name."""
    return _TOKEN.sub("-", str(text)).strip("-") or "x"


def _pct(x: float) -> str:
    return f"{x * 100:.3f}".rstrip("0").rstrip(".") + "%"


def bar_html(snap: TaskSnapshot) -> str:
    """The segmented bar as HTML: one absolutely positioned ``div`` per acknowledged range."""
    segs = segments(snap.ranges, snap.total, min_width=0.002)
    if snap.total == 0 and snap.state is TaskState.DONE:
        segs = [Segment(0, 0, 0.0, 1.0)]
    inner = "".join(
        f'<div class="nbupload-segment" data-start="{s.start}" data-end="{s.end}" '
        f'style="left:{_pct(s.left)};width:{_pct(s.width)}"></div>'
        for s in segs
    )
    return (
        f'<div class="nbupload-bar" data-task-id="{html.escape(snap.id)}" data-state="{snap.state.value}" '
        f'data-acked="{snap.acked}" data-total="{snap.total}" data-segments="{len(segs)}" '
        f'title="{html.escape(str(snap.ranges) or "nothing acknowledged yet")}">{inner}</div>'
    )


def progress_html(snap: TaskSnapshot) -> str:
    """The bar and the bytes/rate/ETA text in one HTML value.

    They change together on every progress update; as one widget value that is one comm
    message per update instead of two (the benchmark counted ~20 messages/s per task).
    """
    return (
        f'<div class="nbupload-progress">{bar_html(snap)}'
        f'<span class="nbupload-stats">{html.escape(stats_text(snap))}</span></div>'
    )


def stats_text(snap: TaskSnapshot) -> str:
    """``1.50 MiB / 4.00 MiB  37%  512 KiB/s  ETA 0:05``."""
    done = f"{format_size(snap.acked)} / {format_size(snap.total)}  {snap.fraction * 100:3.0f}%"
    if snap.state in (TaskState.UPLOADING, TaskState.CONNECTING):
        return f"{done}  {format_rate(snap.rate)}  ETA {format_duration(snap.eta)}"
    if snap.state is TaskState.DONE and snap.started_at and snap.finished_at:
        took = max(snap.finished_at - snap.started_at, 0.0)
        return f"{done}  in {format_duration(took)}"
    return done


def state_html(snap: TaskSnapshot) -> str:
    return (
        f'<span class="nbupload-state nbupload-state-{snap.state.value}" data-state="{snap.state.value}">'
        f"{snap.state.value}</span>"
    )


def error_text(snap: TaskSnapshot) -> str:
    """The server's code and message, e.g. ``4002 File exceeded max_file_size``."""
    return "" if snap.error is None else str(snap.error)


def error_html(snap: TaskSnapshot) -> str:
    """The failure, styled as an error; while the task is still going, a retried error as a warning."""
    if snap.error is None:
        return ""
    code = "" if snap.error.code in (None, "") else html.escape(str(snap.error.code))
    failed = snap.state is TaskState.FAILED
    cls, prefix = ("nbupload-error", "") if failed else ("nbupload-warning", "retrying after: ")
    if not failed and snap.state not in (TaskState.QUEUED, TaskState.CONNECTING, TaskState.UPLOADING):
        return ""
    return (
        f'<span class="{cls}" data-code="{code}" data-retryable="{str(snap.error.retryable).lower()}">'
        f"{html.escape(prefix + error_text(snap))}</span>"
    )


def text_bar(fraction: float, width: int = 20) -> str:
    """A tqdm-like ``|#####     |``."""
    fraction = min(max(fraction, 0.0), 1.0)
    full = int(fraction * width)
    return "|" + "#" * full + " " * (width - full) + "|"


def text_line(snap: TaskSnapshot, width: int = 20) -> str:
    """One stable line per task for consoles, nbconvert and nbval.

    ``data.bin [ab12cd]  37%|#######             | 1.50 MiB/4.00 MiB 512 KiB/s ETA 0:05 uploading``
    """
    head = f"{snap.name} [{snap.id}] {snap.fraction * 100:3.0f}%{text_bar(snap.fraction, width)}"
    size = f"{format_size(snap.acked)}/{format_size(snap.total)}"
    tail = snap.state.value
    if snap.state in (TaskState.UPLOADING, TaskState.CONNECTING):
        tail = f"{format_rate(snap.rate)} ETA {format_duration(snap.eta)} {tail}"
    if snap.error is not None and snap.state is TaskState.FAILED:
        tail = f"{tail}: {error_text(snap)}"
    return f"{head} {size} {tail}"


def summary_text(snaps: Iterable[TaskSnapshot]) -> str:
    """``5 tasks: 2 uploading, 3 done - 12.0 MiB / 20.0 MiB``; empty string for no tasks."""
    snaps = list(snaps)
    if not snaps:
        return ""
    counts = Counter(s.state for s in snaps)
    order = [TaskState.UPLOADING, TaskState.CONNECTING, TaskState.QUEUED, TaskState.PAUSED, TaskState.FAILED,
             TaskState.CANCELLED, TaskState.DONE]
    parts = ", ".join(f"{counts[s]} {s.value}" for s in order if counts[s])
    acked = sum(s.acked for s in snaps)
    total = sum(s.total for s in snaps)
    rate = sum(s.rate for s in snaps if s.state is TaskState.UPLOADING)
    noun = "task" if len(snaps) == 1 else "tasks"
    line = f"{len(snaps)} {noun}: {parts} - {format_size(acked)} / {format_size(total)}"
    return f"{line}  {format_rate(rate)}" if rate > 0 else line
