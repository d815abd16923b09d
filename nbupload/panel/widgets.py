"""The ipywidgets upload panel: one live row per task, a form, resume offers.

Widgets are only touched on the kernel's main thread: by button callbacks (comm messages)
and by :class:`~nbupload.panel.pump.UIPump` flushes. Every element the browser test needs
carries a stable CSS class (``nbupload-row``, ``nbupload-segment``, ``nbupload-error``,
``nbupload-pause`` ...), and the HTML parts carry ``data-*`` attributes (task id, state,
acknowledged bytes).
"""

from __future__ import annotations

import contextlib
import html
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import ipywidgets as widgets

from ..engine.state import FINAL_STATES, TaskSnapshot, can
from .format import (
    ROW_CSS,
    css_token,
    error_html,
    progress_html,
    state_html,
    summary_text,
    text_line,
)
from .picker import FilePicker
from .subshells import route_to_frontend_subshell

__all__ = [
    "PENDING",
    "Controller",
    "Offer",
    "StartRequest",
    "TaskRow",
    "UploadForm",
    "UploadPanel",
    "complete_path",
    "style_widget",
]


class Controller(Protocol):
    """What the panel asks of its controller (:class:`~nbupload.panel.controller.PanelController`).

    Calls come from button callbacks: on the kernel's main thread, or on a subshell thread
    when the frontend sends comm messages to subshells (JupyterLab 4.4+ with ipykernel 7).
    """

    def task_action(self, task_id: str, action: str) -> None: ...

    def start_from_form(self, request: StartRequest) -> str: ...

    def resume_offer(self, task_id: str | None) -> None: ...

    def forget_offer(self, task_id: str | None) -> None: ...

    def show_all(self, flag: bool) -> None: ...

    def clear_finished(self, task_id: str | None) -> None: ...


class StartRequest(dict[str, Any]):
    """The form's values: ``source`` (path or bytes), ``url``, ``protocol``, ``chunk_size``
    (text such as ``4MiB``), ``fields`` (text, ``name=value`` per line), ``filename``,
    ``access_key``, ``secret_key``, ``scope``, ``token``."""


#: action, label, icon; which states enable each comes from the engine's table (``can``).
_BUTTONS = (
    ("pause", "Pause", "pause"),
    ("resume", "Resume", "play"),
    ("cancel", "Cancel", "stop"),
    ("retry", "Retry", "redo"),
)

#: What a row says between a click and the engine's answer.
PENDING = {"pause": "pausing…", "resume": "resuming…", "cancel": "cancelling…", "retry": "retrying…"}


def _hold_all(ws: Iterable[widgets.Widget]) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    for w in ws:
        stack.enter_context(w.hold_sync())
    return stack


def style_widget() -> widgets.HTML:
    """The row/panel stylesheet as a hidden HTML child: each row and the panel carry one."""
    style = widgets.HTML(f"<style>{ROW_CSS}</style>")
    style.add_class("nbupload-style")
    return style


class _FullText:
    """ipywidgets cuts ``text/plain`` at 110 characters; consoles and nbval get the whole text."""

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle: dict[str, Any] | None = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        if bundle is not None:
            bundle["text/plain"] = repr(self)
        return bundle


class TaskRow(_FullText, widgets.VBox):
    """One task: name, segmented bar, bytes/rate/ETA, state, error, buttons.

    Not thread-safe by itself: its controller calls :meth:`update` and :meth:`set_pending`
    under one lock (from the pump thread and from button callbacks).
    """

    def __init__(self, snap: TaskSnapshot, on_action: Callable[[str, str], None]) -> None:
        self.task_id = snap.id
        self._snap = snap
        self._pending: str | None = None
        self._on_action = on_action
        self.name = widgets.HTML()
        # bar and bytes/rate/ETA in one widget: one comm message per progress update
        self.bar = widgets.HTML()
        self.state = widgets.HTML()
        self.error = widgets.HTML()
        self.buttons: dict[str, widgets.Button] = {}
        for action, label, icon in (*_BUTTONS, ("clear", "Clear", "times")):
            button = widgets.Button(
                description=label,
                icon=icon,
                layout=widgets.Layout(width="auto"),
                tooltip=f"{label} {snap.name}",
            )
            button.add_class("nbupload-button")
            button.add_class(f"nbupload-{action}")
            button.on_click(lambda _b, a=action: self._on_action(self.task_id, a))
            route_to_frontend_subshell(button)  # clicks act while a cell runs (see subshells.py)
            self.buttons[action] = button
        for w, cls in (
            (self.name, "nbupload-name-cell"),
            (self.bar, "nbupload-bar-cell"),
            (self.state, "nbupload-state-cell"),
            (self.error, "nbupload-error-cell"),
        ):
            w.add_class(cls)
        self.button_box = widgets.HBox(list(self.buttons.values()))
        self.button_box.add_class("nbupload-buttons")
        line = widgets.HBox([self.name, self.bar, self.state, self.button_box])
        line.add_class("nbupload-line")
        super().__init__([style_widget(), line, self.error], layout=widgets.Layout(width="100%"))
        self.add_class("nbupload-row")
        self.add_class(f"nbupload-task-{css_token(snap.id)}")
        self.update(snap)

    @property
    def snapshot(self) -> TaskSnapshot:
        return self._snap

    def rebind(self, controller: Any) -> None:
        """Send clicks to a new controller (after ``%reload_ext nbupload``)."""
        self._on_action = controller.task_action

    @property
    def pending(self) -> str | None:
        """The action clicked and not yet taken effect (``"pause"`` ...), if any."""
        return self._pending

    def set_pending(self, action: str | None) -> None:
        """Show at once that a click was taken ("pausing…"), before the engine answers."""
        self._pending = action
        self.update(self._snap)

    def update(self, snap: TaskSnapshot) -> None:
        if snap.older_than(self._snap):
            return  # a row never goes back to an older view of its task
        if self._pending is not None and (
            snap.state is not self._snap.state or not can(self._pending, snap.state)
        ):
            self._pending = None  # the engine moved on: the click took effect (or cannot)
        self._snap = snap
        parts = [self.name, self.bar, self.state, self.error, *self.buttons.values()]
        settled = snap.state in FINAL_STATES
        with _hold_all(parts):
            self.name.value = (
                f'<span class="nbupload-name" data-task-id="{html.escape(snap.id)}" '
                f'title="{html.escape(snap.name)}&#10;{html.escape(snap.url)}">{html.escape(snap.name)}</span>'
            )
            self.bar.value = progress_html(snap)
            self.state.value = state_html(snap, PENDING.get(self._pending or ""))
            self.error.value = error_html(snap)
            for action, button in self.buttons.items():
                if action == "clear":
                    enabled = shown = settled
                else:
                    shown = not settled
                    enabled = self._pending is None and can(action, snap.state)
                    if action == "retry" and snap.error is not None and not snap.error.retryable:
                        enabled = False  # e.g. 4002: trying again cannot succeed
                button.disabled = not enabled
                # hidden, not removed: every row keeps the four-button grid (Clear shares
                # Retry's cell), so running and finished rows' bars line up in a panel
                button.layout.visibility = None if shown else "hidden"

    def __repr__(self) -> str:
        return text_line(self._snap)


def complete_path(text: str, limit: int = 50) -> list[str]:
    """Completions of a partial path on the kernel's filesystem (directories end in ``/``)."""
    expanded = os.path.expanduser(text) if text else "."
    directory, prefix = os.path.split(expanded)
    directory = directory or "."
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return []
    out = []
    shown_dir = os.path.split(text)[0]
    for entry in entries:
        if not entry.name.startswith(prefix) or (entry.name.startswith(".") and not prefix.startswith(".")):
            continue
        name = os.path.join(shown_dir, entry.name) if shown_dir else entry.name
        out.append(name + "/" if entry.is_dir() else name)
        if len(out) >= limit:
            break
    return out


class UploadForm(widgets.VBox):
    """Start an upload: a kernel-side path (with completion) or files picked in the browser."""

    def __init__(
        self,
        controller: Controller,
        *,
        url: str = "",
        protocol: str = "uploader",
        chunk_size: str = "4MiB",
        protocols: Sequence[str] = ("uploader", "plain", "wcs-append"),
        default_url: Callable[[str], str] | None = None,
    ) -> None:
        self.controller = controller
        self._default_url = default_url
        wide = widgets.Layout(width="100%")
        self.path = widgets.Combobox(
            placeholder="path on the kernel's filesystem",
            ensure_option=False,
            description="File",
            layout=wide,
        )
        self.url = widgets.Text(value=url, placeholder="upload URL", description="URL", layout=wide)
        self.protocol = widgets.Dropdown(options=list(protocols), value=protocol, description="Protocol")
        self.chunk = widgets.Text(value=chunk_size, description="Chunk")
        self.fields = widgets.Textarea(
            placeholder="name=value, one per line",
            description="Fields",
            layout=widgets.Layout(width="100%", height="4em"),
        )
        self.access_key = widgets.Text(description="Access key", placeholder="WCS (optional)")
        self.secret_key = widgets.Password(description="Secret key", placeholder="WCS (optional)")
        self.scope = widgets.Text(description="Scope", placeholder="bucket[:key]")
        self.start = widgets.Button(description="Start upload", icon="upload", button_style="primary")
        self.picker = FilePicker(
            lambda path, name: self.controller.start_from_form(self.request(source=str(path), filename=name)),
            # the session's engine (PanelController.session), through whichever controller holds
            # this form now (adopt); None from a controller without a session
            engine=lambda: getattr(getattr(self.controller, "session", None), "engine", None),
        )
        self.message = widgets.HTML()
        for w, cls in (
            (self.path, "nbupload-path"),
            (self.url, "nbupload-url"),
            (self.protocol, "nbupload-protocol"),
            (self.chunk, "nbupload-chunk"),
            (self.fields, "nbupload-fields"),
            (self.access_key, "nbupload-access-key"),
            (self.secret_key, "nbupload-secret-key"),
            (self.scope, "nbupload-scope"),
            (self.start, "nbupload-start"),
            (self.picker, "nbupload-picker"),
            (self.message, "nbupload-form-message"),
        ):
            w.add_class(cls)
        self.path.observe(self._complete, names="value")
        self.protocol.observe(self._protocol_changed, names="value")
        self.start.on_click(self._on_start)
        wcs = widgets.HBox([self.access_key, self.secret_key, self.scope])
        settings = widgets.HBox([self.protocol, self.chunk])
        #: the row of ways to start an upload; :meth:`add_source` appends to it
        self.sources = widgets.HBox([self.start, self.picker])
        for box in (wcs, settings, self.sources):
            box.add_class("nbupload-form-line")
        self.sources.add_class("nbupload-form-sources")
        super().__init__(
            [
                widgets.HTML("<b>New upload</b>"),
                self.path,
                self.url,
                settings,
                self.fields,
                wcs,
                self.sources,
                self.message,
            ],
            layout=widgets.Layout(width="100%"),
        )
        self.add_class("nbupload-form")

    def add_source(self, widget: widgets.Widget) -> None:
        """Add one more way to start uploads (e.g. the browser file picker) next to "Start upload".

        The widget starts uploads through ``self.controller.start_from_form(request)``, with
        ``self.request(source=..., filename=...)`` carrying the form's URL, protocol and options,
        and reports through :meth:`say`.
        """
        self.sources.children = (*self.sources.children, widget)

    def _protocol_changed(self, change: Any) -> None:
        """Keep the URL box on the default endpoint of the chosen protocol, unless typed in."""
        if self._default_url is None:
            return
        if self.url.value.strip() in ("", self._default_url(change["old"])):
            self.url.value = self._default_url(change["new"])

    def _complete(self, change: Any) -> None:
        self.path.options = tuple(complete_path(change["new"]))

    def request(self, **source: Any) -> StartRequest:
        return StartRequest(
            url=self.url.value.strip(),
            protocol=self.protocol.value,
            chunk_size=self.chunk.value.strip(),
            fields=self.fields.value,
            access_key=self.access_key.value.strip(),
            secret_key=self.secret_key.value,
            scope=self.scope.value.strip(),
            **source,
        )

    def say(self, text: str, error: bool = False) -> None:
        """Show a line under the form (an error in the error style)."""
        cls = "nbupload-error" if error else "nbupload-info"
        self.message.value = f'<span class="{cls}">{html.escape(text)}</span>' if text else ""

    def _submit(self, request: StartRequest) -> None:
        try:
            task_id = self.controller.start_from_form(request)
        except Exception as exc:  # noqa: BLE001 - shown in the form, never as a traceback
            self.say(str(exc) or type(exc).__name__, error=True)
        else:
            note = ""
            if self.secret_key.value:
                # the widget's value lives in the frontend's model (and in saved widget state):
                # keep the secret there no longer than needed
                self.secret_key.value = ""
                note = " (secret key cleared from the form)"
            self.say(f"started {task_id}{note}")

    def _on_start(self, _button: Any) -> None:
        path = self.path.value.strip()
        if not path:
            self.say("choose a file first", error=True)
            return
        full = Path(os.path.expanduser(path))
        self._submit(self.request(source=str(full), filename=full.name))


class UploadPanel(_FullText, widgets.VBox):
    """Every task of the kernel, a summary line, the resume offers and the form."""

    def __init__(
        self, controller: Controller, rows: Callable[[], Sequence[TaskRow]], *, form: UploadForm | None = None
    ) -> None:
        self.controller = controller
        self._rows = rows
        self.style = style_widget()
        self.summary = widgets.HTML()
        self.summary.add_class("nbupload-summary")
        self.clear_done = widgets.Button(
            description="Clear finished",
            icon="times",
            layout=widgets.Layout(width="auto", display="none"),
            tooltip="remove done and cancelled rows",
        )
        self.clear_done.add_class("nbupload-clear-finished")
        self.clear_done.on_click(lambda _b: self.controller.clear_finished(None))
        head = widgets.HBox([self.summary, self.clear_done])
        head.add_class("nbupload-head")
        self.offers = widgets.VBox()
        self.offers.add_class("nbupload-offers")
        self.rows_box = widgets.VBox(layout=widgets.Layout(width="100%"))
        self.rows_box.add_class("nbupload-rows")
        self.form = form
        children = [self.style, head, self.offers, self.rows_box]
        if form is not None:
            children.append(form)
        super().__init__(children, layout=widgets.Layout(width="100%"))
        self.add_class("nbupload-panel")
        self.refresh()

    def refresh(self) -> None:
        """Re-read the row list (a task was added or cleared) and the summary."""
        rows = list(self._rows())
        if tuple(rows) != tuple(self.rows_box.children):
            self.rows_box.children = rows
        snaps = [r.snapshot for r in rows]
        text = summary_text(snaps) if len(snaps) > 1 else ""
        if not snaps:
            text = "No uploads yet."
        self.summary.value = f'<span class="nbupload-summary-text">{html.escape(text)}</span>' if text else ""
        self.clear_done.layout.display = None if any(s.state in FINAL_STATES for s in snaps) else "none"

    def set_offers(self, offers: Sequence[Offer], *, hidden: int = 0, all_shown: bool = False) -> None:
        """Unfinished tasks found in the journal, each with Resume and Forget; ``hidden``
        more (of other notebooks and programs) behind "Show all"."""
        toggle: widgets.Button | None = None
        if hidden:
            toggle = widgets.Button(
                description=f"Show all ({hidden} more)",
                icon="eye",
                layout=widgets.Layout(width="auto"),
                tooltip="unfinished uploads of other notebooks and programs too",
            )
            toggle.add_class("nbupload-offer-show-all")
            toggle.on_click(lambda _b: self.controller.show_all(True))
        elif all_shown:
            toggle = widgets.Button(
                description="Only this notebook", icon="filter", layout=widgets.Layout(width="auto")
            )
            toggle.add_class("nbupload-offer-show-mine")
            toggle.on_click(lambda _b: self.controller.show_all(False))
        if not offers:
            if toggle is None:
                self.offers.children = ()
                return
            plural = "s" if hidden != 1 else ""
            note = widgets.HTML(f"<b>{hidden} unfinished upload{plural} of other notebooks or programs</b>")
            line = widgets.HBox([note, toggle], layout=widgets.Layout(width="auto"))
            line.add_class("nbupload-offer-actions")
            self.offers.children = (line,)
            return
        n = len(offers)
        items: list[widgets.Widget] = [
            widgets.HTML(f"<b>{n} unfinished upload{'s' if n != 1 else ''} from a previous session</b>")
        ]
        for offer in offers:
            resume = widgets.Button(
                description="Resume",
                icon="play",
                layout=widgets.Layout(width="auto"),
                tooltip=f"resume {offer.name}",
                disabled=not offer.resumable,
            )
            resume.add_class("nbupload-offer-resume")
            resume.on_click(lambda _b, t=offer.id: self.controller.resume_offer(t))
            forget = widgets.Button(
                description="Forget",
                icon="trash",
                layout=widgets.Layout(width="auto"),
                tooltip=f"forget {offer.name} (removes its journal entry)",
                disabled=offer.locked,
            )
            forget.add_class("nbupload-offer-forget")
            forget.on_click(lambda _b, t=offer.id: self.controller.forget_offer(t))
            cls = "nbupload-offer-text" + (" nbupload-offer-dead" if offer.note else "")
            label = widgets.HTML(
                f'<span class="{cls}" title="{html.escape(offer.url)}">{html.escape(offer.text)}</span>'
            )
            label.add_class("nbupload-offer-text")
            actions = widgets.HBox([resume, forget])
            actions.add_class("nbupload-offer-actions")
            line = widgets.HBox([actions, label])
            line.add_class("nbupload-offer")
            line.add_class(f"nbupload-offer-{css_token(offer.id)}")
            items.append(line)
        buttons: list[widgets.Widget] = []
        if n > 1:
            every = widgets.Button(description="Resume all", icon="play", layout=widgets.Layout(width="auto"))
            every.add_class("nbupload-offer-resume-all")
            every.on_click(lambda _b: self.controller.resume_offer(None))
            buttons.append(every)
        if any(o.forgettable_as_failed for o in offers):
            dead = widgets.Button(
                description="Forget unresumable",
                icon="trash",
                layout=widgets.Layout(width="auto"),
                tooltip="forget the offers that cannot resume (their server is gone)",
            )
            dead.add_class("nbupload-offer-forget-failed")
            dead.on_click(lambda _b: self.controller.forget_offer(None))
            buttons.append(dead)
        if toggle is not None:
            buttons.append(toggle)
        if buttons:
            box = widgets.HBox(buttons, layout=widgets.Layout(width="auto", align_self="flex-start"))
            box.add_class("nbupload-offer-actions")
            items.append(box)
        self.offers.children = items

    def __repr__(self) -> str:
        snaps = [r.snapshot for r in self._rows()]
        lines = [summary_text(snaps) or "No uploads yet."] if len(snaps) != 1 else []
        lines += [text_line(s) for s in snaps]
        return "\n".join(lines)


class Offer:
    """An unfinished task from the journal as the panel shows it (see ``describe_offer``)."""

    def __init__(
        self,
        id: str,
        name: str,
        url: str,
        text: str,
        *,
        note: str = "",
        resumable: bool = True,
        locked: bool = False,
        mine: bool = True,
    ) -> None:
        self.id = id
        self.name = name
        self.url = url
        self.text = text
        self.note = note  # why it cannot resume as is ("its demo server is gone"), or ""
        self.resumable = resumable
        self.locked = locked  # another kernel or process runs it: neither resumed nor forgotten here
        self.mine = mine  # started from this notebook: shown without "Show all"

    @property
    def forgettable_as_failed(self) -> bool:
        """Cannot resume as is, and nobody else is running it ("Forget unresumable")."""
        return bool(self.note) and not self.locked

    def __repr__(self) -> str:
        return f"Offer({self.id!r}, {self.text!r})"
