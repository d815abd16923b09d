"""The panel controller: rows, the panel, the form, the resume offers and the UI pump.

One controller per IPython session. It turns engine events into widget updates (through
:class:`~nbupload.panel.pump.UIPump`, on the pump's own thread under a kernel; see the theory
of operation in :mod:`nbupload.panel.pump`) and button clicks into engine calls. Every
widget change happens under :attr:`PanelController.lock`: flushes run on the pump thread,
clicks on the kernel's main thread or on a subshell thread, and ``%upload`` on the main
thread.

Everything about uploads themselves (engine, config, credentials, the embedded server) is
asked of the *session* (:class:`SessionLike`); the controller knows nothing of IPython.
Rows outlive a controller: :meth:`PanelController.detach` hands them to the next one
(``%reload_ext nbupload``), so displayed rows stay alive and keep updating.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..engine.state import FINAL_STATES, TaskEvent, TaskSnapshot, can
from ..units import format_size
from .pump import ManualScheduler, Scheduler, ThreadScheduler, UIPump

__all__ = ["Detached", "PanelController", "SessionLike", "describe_offer"]


class SessionLike(Protocol):
    """What the controller asks of the IPython session (:class:`nbupload.ipython.session.UploadSession`)."""

    @property
    def engine(self) -> Any: ...

    def resume(self, task_id: str | None) -> list[Any]: ...

    def start_from_form(self, request: dict[str, Any]) -> str: ...

    def default_url(self, protocol: str) -> str: ...


class Detached:
    """What a closed controller leaves for the next one: its live rows (and the panel)."""

    def __init__(self, rows: dict[str, Any], panel: Any, form: Any) -> None:
        self.rows = rows
        self.panel = panel
        self.form = form


class PanelController:
    """Rows, panel, form and offers of one session (see the module docstring)."""

    def __init__(
        self,
        session: SessionLike,
        scheduler: Scheduler,
        *,
        interval: float = 0.1,
        form_defaults: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.session = session
        self.lock = threading.RLock()
        self.scheduler = scheduler
        self.pump = UIPump(self._apply, scheduler, interval=interval)
        self.rows: dict[str, Any] = {}
        self.panel: Any = None
        self.form: Any = None
        #: every unfinished journal entry; the panel shows :meth:`visible_offers`
        self.offers: list[Any] = []
        #: "Show all": offers of other notebooks and programs too
        self.show_all_offers = False
        self._form_defaults = form_defaults or dict

    # -- adopting rows of a previous controller (reload) -----------------------------------
    def adopt(self, detached: Detached | None) -> None:
        if detached is None:
            return
        with self.lock:
            self.rows.update(detached.rows)
            for row in detached.rows.values():
                row.rebind(self)
            self.panel, self.form = detached.panel, detached.form
            if self.panel is not None:
                self.panel.controller = self
                self.panel._rows = lambda: list(self.rows.values())
            if self.form is not None:
                self.form.controller = self
        for task in self.session.engine.tasks():  # catch up with what happened meanwhile
            self.pump.push(task.snapshot())

    def detach(self) -> Detached:
        """Stop the pump; hand the live widgets over (to :meth:`adopt`), closing nothing."""
        self.pump.close()
        if isinstance(self.scheduler, ThreadScheduler):
            self.scheduler.close()
        with self.lock:
            out = Detached(dict(self.rows), self.panel, self.form)
            self.rows.clear()
            self.panel = self.form = None
        return out

    def close(self) -> None:
        """Stop the pump and close every widget (comms) this controller made."""
        detached = self.detach()
        for w in [*detached.rows.values(), *([detached.panel] if detached.panel is not None else [])]:
            _close_tree(w)

    # -- engine side (any thread) -------------------------------------------------------------
    def on_event(self, event: TaskEvent | TaskSnapshot) -> None:
        self.pump.push(event)

    # -- pump side ----------------------------------------------------------------------------
    def _apply(self, snaps: list[TaskSnapshot]) -> None:
        from .batchrow import batch_news

        with self.lock:
            snaps, added = batch_news(self, snaps)  # a batch's tasks show in its one row (batchrow.py)
            for snap in snaps:
                row = self.rows.get(snap.id)
                if row is None:
                    if self.panel is None:
                        continue  # nobody shows this task yet: no widget, no comm
                    row = self._new_row(snap)
                    added = True
                row.update(snap)
            if self.panel is not None and (added or len(self.rows) > 1):
                self.panel.refresh()  # new rows, and the summary line
            picker = getattr(self.form, "picker", None)
            if picker is not None:
                picker.note_tasks(snaps)  # the picks' kernel-to-server leg

    def flush(self, *, force: bool = False) -> None:
        """Apply pending updates now (main thread; terminal IPython has no pump thread)."""
        if isinstance(self.scheduler, ManualScheduler):
            self.scheduler.run_due(force=force)
        self.pump.flush(force=force)

    def _new_row(self, snap: TaskSnapshot) -> Any:
        from .widgets import TaskRow

        row = TaskRow(snap, self.task_action)
        self.rows[snap.id] = row
        return row

    def row_for(self, task: Any) -> Any:
        """The live row of ``task`` (made if needed), e.g. for ``%upload FILE`` to display."""
        with self.lock:
            # snapshot under the lock: a flush that ran between a snapshot taken outside it and
            # the new row would have dropped the task's last update (no row to show it yet),
            # leaving a finished upload's row at "connecting, 0 B" for good
            snap = task.snapshot()
            row = self.rows.get(snap.id)
            if row is None:
                row = self._new_row(snap)
                if self.panel is not None:
                    self.panel.refresh()
            else:
                row.update(snap)
        return row

    def get_panel(self) -> Any:
        from .widgets import UploadForm, UploadPanel

        engine = self.session.engine
        # Let the engine deliver the events posted so far, then apply them here, in order.
        engine.flush_events(0.5)
        self.flush(force=True)
        with self.lock:
            if self.panel is None:
                from .batchrow import add_batch_rows

                add_batch_rows(self, engine)  # one row per batch, none for its files
                for task in engine.tasks():
                    if task.id not in self.rows and not _owner(task.id):
                        self._new_row(task.snapshot())
                self.form = UploadForm(self, **self._form_defaults())
                self.panel = UploadPanel(self, lambda: list(self.rows.values()), form=self.form)
                self._show_offers()
            else:
                self.panel.refresh()
            return self.panel

    # -- clicks (main thread or a subshell thread) ---------------------------------------------
    def task_action(self, task_id: str, action: str) -> None:
        """A row's button. The row shows the click at once ("pausing…"), then the engine acts."""
        if action == "clear":
            self.clear_finished(task_id)
            return
        try:
            task = self.session.engine.get(task_id)
        except KeyError:
            return
        if action not in ("pause", "resume", "cancel", "retry") or not can(action, task.state):
            self.pump.push(task.snapshot())
            return
        with self.lock:
            row = self.rows.get(task_id)
            if row is not None:
                row.set_pending(action)
        try:
            if action in ("resume", "retry"):
                self.session.resume(task_id)
            else:
                getattr(task, action)()
        except (RuntimeError, ValueError, OSError, KeyError) as exc:
            with self.lock:
                if row is not None:
                    row.set_pending(None)
                if self.form is not None:
                    self.form.say(f"cannot {action} {task_id}: {exc}", error=True)
        self.pump.push(task.snapshot())

    def clear_finished(self, task_id: str | None) -> None:
        """Drop done/cancelled rows (one, or all with ``None``) from the panel and the engine's list."""
        engine = self.session.engine
        with self.lock:
            ids = [task_id] if task_id is not None else list(self.rows)
            for one in ids:
                row = self.rows.get(one)
                if row is None or row.snapshot.state not in FINAL_STATES:
                    continue
                with contextlib.suppress(KeyError):
                    engine.forget(one)
                self.pump.forget(one)
                del self.rows[one]
                _close_tree(row)
            if self.panel is not None:
                self.panel.refresh()

    # -- offers ------------------------------------------------------------------------------
    def set_offers(self, offers: Sequence[Any]) -> None:
        with self.lock:
            self.offers = list(offers)
            self._show_offers()

    def visible_offers(self) -> list[Any]:
        """The offers of this notebook (all of them with "Show all", or outside Jupyter)."""
        with self.lock:
            return list(self.offers) if self.show_all_offers else [o for o in self.offers if o.mine]

    def show_all(self, flag: bool) -> None:
        """The panel's "Show all" / "Only this notebook" toggle."""
        with self.lock:
            self.show_all_offers = bool(flag)
            self._show_offers()

    def _show_offers(self) -> None:
        with self.lock:
            if self.panel is not None:
                shown = self.visible_offers()
                self.panel.set_offers(
                    shown, hidden=len(self.offers) - len(shown), all_shown=self.show_all_offers
                )

    def resume_offer(self, task_id: str | None) -> None:
        try:
            tasks = self.session.resume(task_id) if task_id is not None else self._resume_all_offers()
        except (KeyError, RuntimeError, ValueError, OSError) as exc:
            with self.lock:
                if self.form is not None:
                    self.form.say(f"cannot resume {task_id}: {exc}", error=True)
            return
        done = {t.id for t in tasks}
        with self.lock:
            self.offers = [o for o in self.offers if o.id not in done]
            if self.panel is not None:
                for task in tasks:
                    if task.id not in self.rows:
                        self._new_row(task.snapshot())
                self._show_offers()
                self.panel.refresh()

    def _resume_all_offers(self) -> list[Any]:
        """ "Resume all": the offers shown (this notebook's unless "Show all")."""
        out: list[Any] = []
        for offer in self.visible_offers():
            if not offer.resumable:
                continue
            with contextlib.suppress(KeyError, RuntimeError, ValueError, OSError):
                out += self.session.resume(offer.id)
        return out

    def forget_offer(self, task_id: str | None) -> None:
        """Remove one journal entry, or (``None``) every offer shown that cannot resume as is."""
        engine = self.session.engine
        with self.lock:
            targets = [
                o
                for o in (self.offers if task_id is not None else self.visible_offers())
                if (o.id == task_id if task_id is not None else o.forgettable_as_failed)
            ]
            gone = set()
            for offer in targets:
                try:
                    if not forget_batch_offer(engine, offer.id):  # a batch: its record and files
                        engine.discard(offer.id)
                except KeyError:
                    pass  # already gone from the journal
                except Exception as exc:  # noqa: BLE001 - e.g. locked by another kernel: say so, keep the offer
                    if self.form is not None:
                        self.form.say(f"cannot forget {offer.id}: {exc}", error=True)
                    continue
                gone.add(offer.id)
            self.offers = [o for o in self.offers if o.id not in gone]
            self._show_offers()

    def start_from_form(self, request: dict[str, Any]) -> str:
        task_id = self.session.start_from_form(request)
        with contextlib.suppress(KeyError):
            self.pump.push(self.session.engine.get(task_id).snapshot())
        return task_id


def forget_batch_offer(engine: Any, offer_id: str) -> bool:
    from .batchrow import forget_batch_offer as forget

    return forget(engine, offer_id)


def _owner(task_id: str) -> str:
    """The batch a task belongs to ('' when none); see :mod:`nbupload.panel.batchrow`."""
    from .batchrow import owner

    return owner(task_id)


def _close_tree(widget: Any) -> None:
    for child in getattr(widget, "children", ()) or ():
        _close_tree(child)
    with contextlib.suppress(Exception):
        widget.close()


def _age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def _loopback_alive(url: str, timeout: float = 0.3) -> bool | None:
    """Whether a loopback URL's port accepts connections (None: not a loopback URL)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if host not in ("127.0.0.1", "localhost", "::1") or port is None:
        return None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def describe_offer(entry: Any, *, now: float | None = None, notebook: str | None = None) -> Any:
    """An :class:`~nbupload.panel.widgets.Offer` for a journal entry: name, size, progress,
    server, age, why it stopped (its last error, or its kernel ended while it ran), and why it
    cannot resume as is (its loopback server is gone, its file too, another process holds it).

    It is *mine* (shown by default) when it was started from ``notebook`` (the journal notes
    the notebook of each task started by the extension); outside Jupyter (``notebook`` None)
    every offer is."""
    from .widgets import Offer

    now = time.time() if now is None else now
    name = getattr(entry, "name", "") or "?"
    url = str(getattr(entry, "url", "") or "")
    total = int(getattr(entry, "total", 0) or 0)
    acked = int(getattr(entry, "acked", 0) or 0)
    pct = f"{acked * 100 / total:.0f}%" if total else "0%"
    parts = [f"{name} [{entry.id}]", f"{format_size(acked)} / {format_size(total)} ({pct})"]
    host = urlsplit(url).netloc if url else "?"
    parts.append(f"to {host}")
    updated = getattr(entry, "updated_at", None)
    if updated:
        parts.append(f"stopped {_age(now - float(updated))}")
    labels = dict(getattr(entry, "labels", None) or {})
    state, error = getattr(entry, "state", None), getattr(entry, "error", None)
    if error:
        parts.append(f"last error: {error}")
    elif state in ("queued", "connecting", "uploading"):
        parts.append("its kernel ended while it ran")
    elif state == "paused":
        parts.append("paused")
    note = ""
    resumable = True
    path = getattr(entry, "path", None)
    locked = bool(getattr(entry, "locked", False))
    if locked:
        note, resumable = "another kernel or process is running it", False
    elif path and not os.path.exists(path):
        note = "its source file is gone"
        resumable = False
    else:
        alive = _loopback_alive(url)
        if alive is False:
            resumable = False
            root = labels.get("server_root")
            if labels.get("server") == "embedded" and root:
                note = (
                    f"its demo server stopped with its kernel: `%upload server start --root {root}` "
                    "starts one on the same root and port and resumes it"
                )
            elif labels.get("server") == "embedded":
                note = (
                    "its demo server ended with its kernel and took the part uploaded with it "
                    "(a temporary root): it cannot resume; Forget it"
                )
            else:
                note = (
                    "its server is not running (an embedded demo server ends with its kernel; "
                    "start one on the same root and port to resume)"
                )
    text = "  ".join(parts) + (f"  - {note}" if note else "")
    mine = notebook is None or labels.get("notebook") == notebook
    return Offer(entry.id, name, url, text, note=note, resumable=resumable, locked=locked, mine=mine)
