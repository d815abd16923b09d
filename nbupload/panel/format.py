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
    "ROW_CSS",
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

#: The stylesheet of a row and of the panel. Every row carries it (a ``<style>`` in its own
#: HTML child), so a row displayed alone by ``%upload FILE`` is styled without the panel being
#: on the page. Colours follow JupyterLab's theme variables where those meet WCAG AA (bars,
#: tracks, text) and use our own per-theme values for error and warning text, whose theme
#: counterparts fall below 4.5:1 (``--jp-warn-color0`` on white, ``--jp-error-color0`` on the
#: dark theme's background). ``body[data-jp-theme-light="false"]`` covers dark and
#: high-contrast themes. The row is a container (``container-type: inline-size``): below
#: 760 px of row width the buttons collapse to their icons (the label stays in the tooltip),
#: and every part may shrink or wrap but never overlaps another. A clicked (focused, still
#: enabled) button makes the state read "pausing…" in the browser itself, before the kernel
#: has seen the click: a kernel busy with a cell takes comm messages only when the cell ends
#: unless the frontend routes them to a subshell.
ROW_CSS = """
.nbupload-row,.nbupload-panel{--nbu-track:var(--jp-layout-color3,#d0d0d0);
  --nbu-fill:var(--jp-brand-color1,#1976d2);--nbu-done:var(--jp-success-color1,#2e7d32);
  --nbu-paused:var(--jp-warn-color1,#f57c00);--nbu-failed:var(--jp-error-color1,#d32f2f);
  --nbu-cancelled:var(--jp-layout-color4,#8a8a8a);
  --nbu-error-text:#b3261e;--nbu-warn-text:#8a5300;--nbu-muted:var(--jp-ui-font-color2,#616161)}
body[data-jp-theme-light="false"] .nbupload-row,body[data-jp-theme-light="false"] .nbupload-panel{
  --nbu-error-text:#ff8a80;--nbu-warn-text:#ffc44d}
.nbupload-style{display:none!important}
.nbupload-row{container-type:inline-size;box-sizing:border-box;max-width:100%}
.nbupload-line{display:flex!important;flex-wrap:wrap;align-items:center;column-gap:6px;row-gap:2px;
  width:100%;min-width:0}
.nbupload-line>.jupyter-widgets{margin-left:0;margin-right:0}
.nbupload-name-cell{flex:0 1 14em;min-width:4em;overflow:hidden}
.nbupload-name-cell .widget-html-content,.nbupload-bar-cell .widget-html-content,
.nbupload-state-cell .widget-html-content{min-width:0;max-width:100%}
.nbupload-name{display:block;font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.nbupload-bar-cell{flex:1 1 16em;min-width:10em;overflow:hidden}
.nbupload-progress{display:flex;flex-wrap:wrap;align-items:center;column-gap:0.8em;width:100%;min-width:0}
.nbupload-bar{position:relative;box-sizing:border-box;height:14px;flex:1 1 8em;min-width:6em;
  background:var(--nbu-track);border-radius:3px;overflow:hidden}
.nbupload-segment{position:absolute;top:0;bottom:0;background:var(--nbu-fill)}
.nbupload-bar[data-state="done"] .nbupload-segment{background:var(--nbu-done)}
.nbupload-bar[data-state="paused"] .nbupload-segment{background:var(--nbu-paused)}
.nbupload-bar[data-state="failed"] .nbupload-segment{background:var(--nbu-failed)}
.nbupload-bar[data-state="cancelled"] .nbupload-segment{background:var(--nbu-cancelled)}
.nbupload-bar[data-state="paused"]{background-image:repeating-linear-gradient(135deg,transparent 0 6px,
  rgba(127,127,127,.25) 6px 12px)}
.nbupload-bar[data-state="cancelled"]{opacity:.6}
.nbupload-bar[data-state="failed"]{outline:1px solid var(--nbu-failed);outline-offset:-1px}
.nbupload-stats{flex:0 1 auto;white-space:nowrap;min-width:min(46ch,100%);font-variant-numeric:tabular-nums}
.nbupload-state-cell{flex:0 0 6.5em;min-width:6.5em}
.nbupload-state{font-variant:small-caps;white-space:nowrap}
.nbupload-state-failed,.nbupload-state-cancelled{font-weight:600}
.nbupload-state-failed{color:var(--nbu-error-text)}
.nbupload-state-paused{color:var(--nbu-warn-text)}
.nbupload-state-cancelled{color:var(--nbu-muted)}
.nbupload-pending{font-style:italic}
.nbupload-row:has(.nbupload-pause:focus:enabled) .nbupload-state:not(.nbupload-pending){font-size:0}
.nbupload-row:has(.nbupload-pause:focus:enabled) .nbupload-state:not(.nbupload-pending)::after{
  content:"pausing…";font-size:var(--jp-ui-font-size1,13px);font-style:italic}
.nbupload-row:has(.nbupload-resume:focus:enabled) .nbupload-state:not(.nbupload-pending){font-size:0}
.nbupload-row:has(.nbupload-resume:focus:enabled) .nbupload-state:not(.nbupload-pending)::after{
  content:"resuming…";font-size:var(--jp-ui-font-size1,13px);font-style:italic}
.nbupload-row:has(.nbupload-cancel:focus:enabled) .nbupload-state:not(.nbupload-pending){font-size:0}
.nbupload-row:has(.nbupload-cancel:focus:enabled) .nbupload-state:not(.nbupload-pending)::after{
  content:"cancelling…";font-size:var(--jp-ui-font-size1,13px);font-style:italic}
.nbupload-row:has(.nbupload-retry:focus:enabled) .nbupload-state:not(.nbupload-pending){font-size:0}
.nbupload-row:has(.nbupload-retry:focus:enabled) .nbupload-state:not(.nbupload-pending)::after{
  content:"retrying…";font-size:var(--jp-ui-font-size1,13px);font-style:italic}
.nbupload-buttons{display:grid!important;grid-template-columns:repeat(4,auto);flex:0 0 auto;gap:4px;
  margin-left:auto;justify-items:end}
.nbupload-buttons>.jupyter-widgets{margin:0}
.nbupload-buttons>.nbupload-pause{grid-area:1/1}
.nbupload-buttons>.nbupload-resume{grid-area:1/2}
.nbupload-buttons>.nbupload-cancel{grid-area:1/3}
.nbupload-buttons>.nbupload-retry,.nbupload-buttons>.nbupload-clear{grid-area:1/4}
.nbupload-button{width:auto!important;min-width:0;padding:0 8px;flex:0 0 auto}
@container (max-width: 760px){
  .nbupload-button{font-size:0!important;padding:0 6px;min-width:28px}
  .nbupload-button i{font-size:var(--jp-widgets-font-size,13px);margin:0!important}
  .nbupload-name-cell{flex-basis:9em}
}
.nbupload-error{color:var(--nbu-error-text);font-weight:600;overflow-wrap:anywhere}
.nbupload-warning{color:var(--nbu-warn-text);overflow-wrap:anywhere}
.nbupload-error-cell .widget-html-content{white-space:normal}
.nbupload-info{color:var(--nbu-muted)}
.nbupload-offer{display:flex!important;flex-wrap:wrap;align-items:center;gap:6px}
.nbupload-offer-text{flex:1 1 20em;min-width:0;overflow-wrap:anywhere}
.nbupload-offer-dead{color:var(--nbu-warn-text)}
.nbupload-offer-actions{display:flex!important;flex-wrap:wrap;gap:4px}
.nbupload-offer-actions>.jupyter-widgets{margin:0}
.nbupload-form .widget-text,.nbupload-form .widget-combobox,.nbupload-form .widget-textarea,
.nbupload-form .widget-dropdown{width:100%;max-width:100%;box-sizing:border-box}
.nbupload-form-line{display:flex!important;flex-wrap:wrap;gap:4px}
.nbupload-form-line>.jupyter-widgets{flex:1 1 16em;min-width:0}
.nbupload-form-sources>.jupyter-widgets{flex:0 0 auto;width:auto}
.nbupload-head{display:flex!important;flex-wrap:wrap;align-items:center;gap:6px;width:100%}
.nbupload-head>.nbupload-summary{flex:1 1 auto;min-width:0}
.nbupload-head>.nbupload-clear-finished{flex:0 0 auto;width:auto}
.jp-OutputArea-child:has(.nbupload-row,.nbupload-panel)+.jp-OutputArea-child:has(.nbupload-fallback){
  display:none}
"""

#: Kept for callers of the earlier name.
BAR_CSS = ROW_CSS


@dataclass(frozen=True)
class Segment:
    """One acknowledged interval as fractions of the bar: ``left`` and ``width`` in [0, 1]."""

    start: int
    end: int
    left: float
    width: float


def segments(
    ranges: RangeSet, total: int, *, min_width: float = 0.0, max_segments: int = 200
) -> list[Segment]:
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
    if snap.state in (TaskState.UPLOADING, TaskState.CONNECTING) and snap.error is not None:
        return f"{done}  retrying"  # no stale rate or ETA while the task retries
    if snap.state in (TaskState.UPLOADING, TaskState.CONNECTING):
        return f"{done}  {format_rate(snap.rate)}  ETA {format_duration(snap.eta)}"
    if snap.state is TaskState.DONE and snap.started_at and snap.finished_at:
        took = max(snap.finished_at - snap.started_at, 0.0)
        return f"{done}  in {format_duration(took)}"
    return done


def state_html(snap: TaskSnapshot, pending: str | None = None) -> str:
    """The state word; ``pending`` ("pausing…") while a click waits for the engine."""
    if pending:
        return (
            f'<span class="nbupload-state nbupload-state-{snap.state.value} nbupload-pending" '
            f'data-state="{snap.state.value}" '
            f'data-pending="{html.escape(pending)}">{html.escape(pending)}</span>'
        )
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

    ``data.bin [ab12cd]  37%|#######             | 1.50 MiB/4.00 MiB 512 KiB/s ETA 0:05``
    ``chunk 8.00 MiB uploading`` (one line)

    A running task shows its current chunk size: it adapts to the link (docs/engine.md), and
    this is where a user sees what the engine chose.
    """
    head = f"{snap.name} [{snap.id}] {snap.fraction * 100:3.0f}%{text_bar(snap.fraction, width)}"
    size = f"{format_size(snap.acked)}/{format_size(snap.total)}"
    tail = snap.state.value
    if snap.state in (TaskState.UPLOADING, TaskState.CONNECTING) and snap.error is None:
        chunk = f" chunk {format_size(snap.chunk_size)}" if snap.chunk_size > 0 else ""
        tail = f"{format_rate(snap.rate)} ETA {format_duration(snap.eta)}{chunk} {tail}"
    if snap.error is not None and snap.state is TaskState.FAILED:
        tail = f"{tail}: {error_text(snap)}"
    return f"{head} {size} {tail}"


def summary_text(snaps: Iterable[TaskSnapshot]) -> str:
    """``5 tasks: 2 uploading, 3 done - 12.0 MiB / 20.0 MiB``; empty string for no tasks."""
    snaps = list(snaps)
    if not snaps:
        return ""
    counts = Counter(s.state for s in snaps)
    order = [
        TaskState.UPLOADING,
        TaskState.CONNECTING,
        TaskState.QUEUED,
        TaskState.PAUSED,
        TaskState.FAILED,
        TaskState.CANCELLED,
        TaskState.DONE,
    ]
    parts = ", ".join(f"{counts[s]} {s.value}" for s in order if counts[s])
    # failed and cancelled uploads are not on their way: their bytes are not in the total
    going = [s for s in snaps if s.state not in (TaskState.FAILED, TaskState.CANCELLED)]
    acked = sum(s.acked for s in going)
    total = sum(s.total for s in going)
    rate = sum(s.rate for s in snaps if s.state is TaskState.UPLOADING)
    noun = "task" if len(snaps) == 1 else "tasks"
    line = f"{len(snaps)} {noun}: {parts} - {format_size(acked)} / {format_size(total)}"
    return f"{line}  {format_rate(rate)}" if rate > 0 else line
