"""One row for a whole batch (:class:`nbupload.batch.Batch`): the aggregate, and its files on demand.

A batch of 10,000 files must not make 10,000 rows (10,000 widgets, 10,000 comms, a browser
that chokes): the panel shows one :class:`BatchRow` with files done/total, bytes, rate, ETA
and the failures with their server codes, buttons for the whole batch, and a *Files* toggle.
Expanded, it shows one page of its files (:data:`PAGE` at a time, in one HTML widget, not a
widget per file); collapsed, nothing per file exists at all.

The controller (:mod:`nbupload.panel.controller`) routes the events of a batch's tasks here
instead of making task rows (:func:`nbupload.batch.owner_of` says which batch a task is in),
and calls :meth:`BatchRow.update` from its pump thread under its lock, as for task rows. The
buttons act on the batch directly: the batch is the unit the user steers.
"""

from __future__ import annotations

import html
import sys
from typing import Any

import ipywidgets as widgets

from ..engine.state import TaskSnapshot, TaskState
from ..units import format_duration, format_rate, format_size
from .format import css_token, progress_html
from .subshells import route_to_frontend_subshell
from .widgets import _FullText, _hold_all, style_widget

__all__ = [
    "PAGE",
    "BatchRow",
    "add_batch_rows",
    "batch_news",
    "batch_offers",
    "batch_row",
    "batch_snapshot",
    "forget_batch_offer",
    "owner",
]

#: Files shown per page when a batch row is expanded.
PAGE = 100
#: Failures listed under the row (the rest are counted).
FAILURES_SHOWN = 20

_STATES = {
    "running": TaskState.UPLOADING,
    "paused": TaskState.PAUSED,
    "done": TaskState.DONE,
    "failed": TaskState.FAILED,
    "cancelled": TaskState.CANCELLED,
}
_BUTTONS = (
    ("pause", "Pause", "pause"),
    ("resume", "Resume", "play"),
    ("retry", "Retry failed", "redo"),
    ("cancel", "Cancel", "stop"),
)


def batch_snapshot(batch: Any) -> TaskSnapshot:
    """The batch as one task-like snapshot (``id`` is the batch's), for the panel's summary
    line and for the controller's pump, which carries task snapshots."""
    snap = batch.snapshot()
    return TaskSnapshot(
        id=batch.id,
        name=f"batch of {snap.files_total} files",
        protocol=batch.protocol,
        url=batch.url.split("?")[0],
        state=_STATES.get(snap.state, TaskState.UPLOADING),
        total=snap.bytes_total,
        acked=snap.bytes_done,
        rate=snap.rate,
        eta=snap.eta,
    )


class BatchRow(_FullText, widgets.VBox):
    """A batch: one aggregate line, buttons, failures, and its files when expanded."""

    def __init__(self, batch: Any, controller: Any = None) -> None:
        self.batch = batch
        self.task_id = batch.id  # the controller keys rows by this
        self._controller = controller  # whose pump applies the batch's news (rebind: reload)
        self._snap = batch_snapshot(batch)
        self._page = 0
        self.name = widgets.HTML()
        self.bar = widgets.HTML()
        self.state = widgets.HTML()
        self.failures = widgets.HTML()
        self.buttons: dict[str, widgets.Button] = {}
        for action, label, icon in _BUTTONS:
            button = widgets.Button(description=label, icon=icon, layout=widgets.Layout(width="auto"))
            button.add_class("nbupload-button")
            button.add_class(f"nbupload-batch-{action}")
            button.on_click(lambda _b, a=action: self.act(a))
            route_to_frontend_subshell(button)
            self.buttons[action] = button
        self.expand = widgets.ToggleButton(
            description="Files", icon="list", layout=widgets.Layout(width="auto")
        )
        self.expand.add_class("nbupload-batch-expand")
        self.expand.observe(self._toggled, names="value")
        self.files: widgets.VBox | None = None  # made on first expand
        for w, cls in (
            (self.name, "nbupload-name-cell"),
            (self.bar, "nbupload-bar-cell"),
            (self.state, "nbupload-state-cell"),
            (self.failures, "nbupload-batch-failures"),
        ):
            w.add_class(cls)
        box = widgets.HBox([*self.buttons.values(), self.expand])
        box.add_class("nbupload-buttons")
        line = widgets.HBox([self.name, self.bar, self.state, box])
        line.add_class("nbupload-line")
        self.detail = widgets.VBox()  # holds the files while expanded
        super().__init__(
            [style_widget(), line, self.failures, self.detail], layout=widgets.Layout(width="100%")
        )
        self.add_class("nbupload-row")
        self.add_class("nbupload-batch-row")
        self.add_class(f"nbupload-batch-{css_token(batch.id)}")
        self.update(self._snap)

    @property
    def snapshot(self) -> TaskSnapshot:
        return self._snap

    def rebind(self, controller: Any) -> None:
        """Rows outlive a controller (``%reload_ext``): the batch's news go to the new one's pump
        (the buttons act on the batch itself)."""
        self._controller = controller

    def notify(self) -> None:
        """The batch changed (any thread): ask the controller's pump to show it soon."""
        controller = self._controller
        if controller is not None:
            controller.on_event(batch_snapshot(self.batch))

    # -- steering --------------------------------------------------------------------------
    def act(self, action: str) -> None:
        """A button: pause, resume, retry (the failed files) or cancel the whole batch."""
        getattr(self.batch, action)()
        self.notify()

    # -- showing ---------------------------------------------------------------------------
    def update(self, snap: TaskSnapshot | None = None) -> None:
        """Re-read the batch (``snap`` is ignored: the batch's own snapshot is the truth)."""
        b = self.batch.snapshot()
        self._snap = batch_snapshot(self.batch)
        parts = [self.name, self.bar, self.state, self.failures, *self.buttons.values()]
        with _hold_all(parts):
            done = b.files_done + b.files_skipped
            self.name.value = (
                '<span class="nbupload-name nbupload-batch-name" '
                f'data-batch-id="{html.escape(self.batch.id)}" '
                f'title="{html.escape(self._snap.url)}">batch {html.escape(self.batch.id)}: '
                f'<span class="nbupload-batch-files">{done}/{b.files_total} files</span></span>'
            )
            stats = '<span class="nbupload-stats">'
            self.bar.value = progress_html(self._snap).replace(
                stats, f"{stats}{html.escape(self._stats(b))} · ", 1
            )
            self.state.value = (
                f'<span class="nbupload-state nbupload-state-{self._snap.state.value}" '
                f'data-state="{html.escape(b.state)}">{html.escape(b.state)}</span>'
            )
            self.failures.value = self._failures_html(b)
            settled = b.state in ("done", "cancelled")
            self.buttons["pause"].disabled = b.state != "running"
            self.buttons["resume"].disabled = b.state not in ("paused",)
            self.buttons["retry"].disabled = not b.files_failed
            self.buttons["cancel"].disabled = settled
            for action, button in self.buttons.items():
                button.layout.display = "none" if settled and action != "retry" else None
        if self.files is not None and self.expand.value:
            self._show_page()

    @staticmethod
    def _stats(b: Any) -> str:
        extra = []
        if b.files_skipped:
            extra.append(f"{b.files_skipped} skipped")
        if b.files_failed:
            extra.append(f"{b.files_failed} failed")
        if b.files_cancelled:
            extra.append(f"{b.files_cancelled} cancelled")
        text = f"{b.files_done + b.files_skipped}/{b.files_total} files"
        if extra:
            text += f" ({', '.join(extra)})"
        if b.state == "running" and b.rate:
            text += f", {format_rate(b.rate)}, ETA {format_duration(b.eta)}"
        return text

    @staticmethod
    def _failures_html(b: Any) -> str:
        if not b.failures:
            return ""
        items = "".join(
            f'<li class="nbupload-batch-failure" data-code="{html.escape(f.code or "")}">'
            + html.escape(str(f))
            + (f" (HTTP {f.status})" if f.status else "")
            + "</li>"
            for f in b.failures[:FAILURES_SHOWN]
        )
        more = len(b.failures) - FAILURES_SHOWN
        tail = f"<li>... and {more} more</li>" if more > 0 else ""
        return f'<ul class="nbupload-error nbupload-batch-failure-list">{items}{tail}</ul>'

    # -- the files, on demand --------------------------------------------------------------
    def _toggled(self, change: Any) -> None:
        if change["new"]:
            if self.files is None:
                self._make_files()
            assert self.files is not None
            self.detail.children = (self.files,)
            self._show_page()
        else:
            self.detail.children = ()

    def _make_files(self) -> None:
        self.table = widgets.HTML()
        self.table.add_class("nbupload-batch-table")
        self.prev = widgets.Button(description="Previous", layout=widgets.Layout(width="auto"))
        self.next = widgets.Button(description="Next", layout=widgets.Layout(width="auto"))
        self.prev.add_class("nbupload-batch-prev")
        self.next.add_class("nbupload-batch-next")
        self.prev.on_click(lambda _b: self._turn(-1))
        self.next.on_click(lambda _b: self._turn(1))
        self.page_text = widgets.HTML()
        nav = widgets.HBox([self.prev, self.page_text, self.next])
        self.files = widgets.VBox([self.table, nav])
        self.files.add_class("nbupload-batch-detail")

    def _turn(self, step: int) -> None:
        pages = max(1, -(-len(self.batch) // PAGE))
        self._page = min(max(0, self._page + step), pages - 1)
        self._show_page()

    def _show_page(self) -> None:
        start = self._page * PAGE
        rows = self.batch.file_states(start, PAGE)
        body = "".join(
            f'<tr class="nbupload-batch-file nbupload-batch-file-{html.escape(state)}">'
            f"<td>{html.escape(name)}</td><td>{html.escape(state)}</td>"
            f"<td>{format_size(acked)} / {format_size(size)}</td></tr>"
            for name, state, size, acked in rows
        )
        self.table.value = f"<table>{body}</table>"
        n = len(self.batch)
        self.page_text.value = f"files {start + 1}-{min(start + PAGE, n)} of {n}" if n else "no files"
        self.prev.disabled = self._page == 0
        self.next.disabled = start + PAGE >= n

    def __repr__(self) -> str:
        b = self.batch.snapshot()
        return f"batch {self.batch.id}: {b.describe()}"


# -- the controller's hooks (panel/controller.py calls these, under its lock) ----------------
def _batch_module() -> Any:
    """``nbupload.batch`` if some batch was made in this process (else no task is in one,
    and the panel need not import it)."""
    return sys.modules.get("nbupload.batch")


def owner(task_id: str) -> str:
    """The id of the batch task ``task_id`` belongs to, '' when none."""
    mod = _batch_module()
    return (mod.owner_of(task_id) or "") if mod is not None else ""


def batch_row(controller: Any, batch: Any) -> BatchRow:
    """The row of ``batch`` in ``controller`` (made if needed); news of the batch reach it
    through the controller's pump as a :func:`batch_snapshot`."""
    with controller.lock:
        row = controller.rows.get(batch.id)
        if isinstance(row, BatchRow):
            return row

        row = BatchRow(batch, controller)
        batch.on_change(row.notify)  # the row's controller at the time: rebind follows a reload
        controller.rows[batch.id] = row
        if controller.panel is not None:
            controller.panel.refresh()
        return row


def add_batch_rows(controller: Any, engine: Any) -> None:
    """A row for every live batch of ``engine`` (when the panel is first shown)."""
    mod = _batch_module()
    if mod is not None:
        for batch in mod.batches(engine):
            batch_row(controller, batch)


def batch_news(controller: Any, snaps: list[TaskSnapshot]) -> tuple[list[TaskSnapshot], bool]:
    """Take the snapshots of tasks that belong to a batch out of ``snaps`` and update their
    batch's row instead (made if the panel shows and it has none). Returns the other
    snapshots, and whether a row was added."""
    mod = _batch_module()
    if mod is None:
        return snaps, False
    rest: list[TaskSnapshot] = []
    touched: set[str] = set()
    for snap in snaps:
        batch_id = mod.owner_of(snap.id)
        if batch_id:
            touched.add(batch_id)
        else:
            rest.append(snap)
    added = False
    for batch_id in touched:
        row = controller.rows.get(batch_id)
        if row is None and controller.panel is not None:
            live = next((b for b in mod.batches() if b.id == batch_id), None)
            if live is not None:
                row = batch_row(controller, live)
                added = True
        if row is not None:
            row.update()
    return rest, added


def batch_offers(
    engine: Any, entries: list[Any], *, notebook: str | None = None, waiting: list[Any] | None = None
) -> tuple[list[Any], list[Any]]:
    """Offers for the batches an earlier kernel left in the journal (one each, resumed as one
    batch), and the task entries that are not files of those batches. A batch is ``notebook``'s
    (shown without "Show all") when started from it, or when ``notebook`` is None. ``waiting``:
    the batches (``unfinished_batches(engine, entries=entries)``) when the caller read them
    already, so the journal's records are read once."""
    from ..batch import unfinished_batches
    from .widgets import Offer

    if waiting is None:
        try:
            waiting = unfinished_batches(engine, entries=entries)
        except OSError:
            return [], entries
    if not waiting:
        return [], entries
    offers = []
    for b in waiting:
        running = b.state == "running"  # its lock is held: neither resumed nor forgotten here
        note = "another kernel or process is running it" if running else ""
        offers.append(
            Offer(
                b.id,
                f"batch of {b.files} files",
                b.url,
                f"batch {b.id}: {b.done}/{b.files} files done" + (f"  - {note}" if note else ""),
                note=note,
                resumable=not running,
                locked=running,
                mine=notebook is None or b.labels.get("notebook") == notebook,
            )
        )
    theirs = {task_id for b in waiting for task_id in b.tasks}  # its files' entries: in its offer
    rest = [e for e in entries if getattr(e, "id", None) not in theirs]
    return offers, rest


def forget_batch_offer(engine: Any, offer_id: str) -> bool:
    """*Forget* on a batch's offer: its journal record and its files' entries go. Whether
    ``offer_id`` was a batch."""
    mod = _batch_module()
    if mod is None:
        from .. import batch as mod
    try:
        mod.forget_batch(offer_id, engine=engine)
    except KeyError:
        return False
    return True
