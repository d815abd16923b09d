"""The text a saved notebook shows for a row or the panel once no kernel runs it.

Why a second output. A widget output's display data holds ``text/plain`` next to the widget
view, but JupyterLab renders the view whenever its widget manager is installed: reopened
without the kernel (and without saved widget state), the manager finds no model and writes
"Error displaying widget: model not found", never the text. So each row or panel displayed by
``%upload`` is followed by a small output of its own (``text/plain`` and ``text/html``,
``display_id`` set) holding the task's state in words. Its HTML carries a rule that hides a
failed widget view right before it; every row's stylesheet (``ROW_CSS`` in
:mod:`nbupload.panel.format`) hides the fallback after a live row or panel. Only the text is
saved in the notebook, so nothing differs when a notebook is viewed on GitHub or nbviewer.

The fallback is updated at the end of the cell that displayed it (``post_run_cell``, on the
main thread, while that cell's request is still the parent of what the kernel sends):
JupyterLab applies ``update_display_data`` only to outputs of the request it answers, so a
later update could not reach it. What a saved notebook shows is thus the state when the
displaying cell ended: the final state for ``%upload FILE --wait``; for a background upload,
its state then, said as such. Live state is the widget's, while its kernel runs.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from ..engine.state import TaskSnapshot, TaskState
from ..units import format_size
from .format import error_text, summary_text

__all__ = ["fallback_bundle", "panel_fallback_text", "row_fallback_text"]

#: In the fallback itself: the widget view before it failed (no kernel, no model): hide it.
_HIDE_FAILED_VIEW = (
    ".jp-OutputArea-child:has(+.jp-OutputArea-child .nbupload-fallback)"
    ">.jp-OutputArea-output.jupyter-widgets{display:none}"
)


def _one(snap: TaskSnapshot) -> str:
    size = format_size(snap.total)
    if snap.state is TaskState.DONE:
        return f"{snap.name} — done, {size}"
    if snap.state is TaskState.FAILED:
        return f"{snap.name} — failed at {format_size(snap.acked)} of {size}: {error_text(snap)}"
    held = f"{format_size(snap.acked)} of {size}"
    if snap.state is TaskState.CANCELLED:
        return f"{snap.name} — cancelled at {held}"
    return f"{snap.name} — {snap.state.value} at {held} when this cell ended"


def row_fallback_text(snap: TaskSnapshot) -> str:
    """``nbupload: data.csv — done, 12 MiB`` (what a row says without its kernel)."""
    return f"nbupload: {_one(snap)}"


def panel_fallback_text(snaps: Iterable[TaskSnapshot]) -> str:
    """The panel without its kernel: a summary line, then one line per task."""
    snaps = list(snaps)
    if not snaps:
        return "nbupload panel: no uploads yet"
    lines = [f"nbupload panel: {summary_text(snaps)}"]
    lines += [f"  {_one(s)}" for s in snaps]
    return "\n".join(lines)


def fallback_bundle(text: str) -> dict[str, str]:
    """The fallback output's MIME bundle (``display(bundle, raw=True, display_id=...)``)."""
    return {
        "text/plain": text,
        "text/html": (
            f'<div class="nbupload-fallback"><style>{_HIDE_FAILED_VIEW}</style>'
            f'<pre style="margin:0;white-space:pre-wrap">{html.escape(text)}</pre></div>'
        ),
    }
