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

from ..engine.state import TaskSnapshot, TaskState
from .format import (
    BAR_CSS,
    css_token,
    error_html,
    progress_html,
    state_html,
    summary_text,
    text_line,
)
from .picker import FilePicker

__all__ = ["Controller", "StartRequest", "TaskRow", "UploadForm", "UploadPanel", "complete_path"]


class Controller(Protocol):
    """What the panel asks of the extension (all calls on the kernel's main thread)."""

    def task_action(self, task_id: str, action: str) -> None: ...

    def start_from_form(self, request: StartRequest) -> str: ...

    def resume_offer(self, task_id: str | None) -> None: ...


class StartRequest(dict):
    """The form's values: ``source`` (path or bytes), ``url``, ``protocol``, ``chunk_size``
    (text such as ``4MiB``), ``fields`` (text, ``name=value`` per line), ``filename``,
    ``access_key``, ``secret_key``, ``scope``, ``token``."""


_BUTTONS = (
    ("pause", "Pause", "pause", {TaskState.QUEUED, TaskState.CONNECTING, TaskState.UPLOADING}),
    ("resume", "Resume", "play", {TaskState.PAUSED}),
    ("cancel", "Cancel", "stop", {TaskState.QUEUED, TaskState.CONNECTING, TaskState.UPLOADING, TaskState.PAUSED,
                                  TaskState.FAILED}),
    ("retry", "Retry", "redo", {TaskState.FAILED}),
)


def _hold_all(ws: Iterable[widgets.Widget]) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    for w in ws:
        stack.enter_context(w.hold_sync())
    return stack


class _FullText:
    """ipywidgets cuts ``text/plain`` at 110 characters; consoles and nbval get the whole text."""

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        if bundle is not None:
            bundle["text/plain"] = repr(self)
        return bundle


class TaskRow(_FullText, widgets.VBox):
    """One task: name, segmented bar, bytes/rate/ETA, state, error, buttons."""

    def __init__(self, snap: TaskSnapshot, on_action: Callable[[str, str], None]) -> None:
        self.task_id = snap.id
        self._snap = snap
        self.name = widgets.HTML(layout=widgets.Layout(width="12em"))
        # bar and bytes/rate/ETA in one widget: one comm message per progress update
        self.bar = widgets.HTML(layout=widgets.Layout(flex="1 1 auto", min_width="160px"))
        self.state = widgets.HTML(layout=widgets.Layout(width="7em"))
        self.error = widgets.HTML()
        self.buttons: dict[str, widgets.Button] = {}
        for action, label, icon, _ in _BUTTONS:
            button = widgets.Button(description=label, icon=icon, layout=widgets.Layout(width="auto"),
                                    tooltip=f"{label} {snap.name}")
            button.add_class("nbupload-button")
            button.add_class(f"nbupload-{action}")
            button.on_click(lambda _b, a=action: on_action(self.task_id, a))
            self.buttons[action] = button
        for w, cls in ((self.name, "nbupload-name-cell"), (self.bar, "nbupload-bar-cell"),
                       (self.state, "nbupload-state-cell"),
                       (self.error, "nbupload-error-cell")):
            w.add_class(cls)
        line = widgets.HBox([self.name, self.bar, self.state, *self.buttons.values()],
                            layout=widgets.Layout(align_items="center", width="100%"))
        super().__init__([line, self.error], layout=widgets.Layout(width="100%"))
        self.add_class("nbupload-row")
        self.add_class(f"nbupload-task-{css_token(snap.id)}")
        self.update(snap)

    @property
    def snapshot(self) -> TaskSnapshot:
        return self._snap

    def update(self, snap: TaskSnapshot) -> None:
        self._snap = snap
        parts = [self.name, self.bar, self.state, self.error, *self.buttons.values()]
        with _hold_all(parts):
            self.name.value = (
                f'<span class="nbupload-name" data-task-id="{html.escape(snap.id)}" '
                f'title="{html.escape(snap.url)}">{html.escape(snap.name)}</span>'
            )
            self.bar.value = progress_html(snap)
            self.state.value = state_html(snap)
            self.error.value = error_html(snap)
            for action, _, _, states in _BUTTONS:
                self.buttons[action].disabled = snap.state not in states

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

    def __init__(self, controller: Controller, *, url: str = "", protocol: str = "uploader",
                 chunk_size: str = "4MiB", protocols: Sequence[str] = ("uploader", "plain", "wcs-append"),
                 default_url: Callable[[str], str] | None = None) -> None:
        self.controller = controller
        self._default_url = default_url
        wide = widgets.Layout(width="96%")
        self.path = widgets.Combobox(placeholder="path on the kernel's filesystem", ensure_option=False,
                                     description="File", layout=wide)
        self.url = widgets.Text(value=url, placeholder="upload URL", description="URL", layout=wide)
        self.protocol = widgets.Dropdown(options=list(protocols), value=protocol, description="Protocol")
        self.chunk = widgets.Text(value=chunk_size, description="Chunk", layout=widgets.Layout(width="14em"))
        self.fields = widgets.Textarea(placeholder="name=value, one per line", description="Fields",
                                       layout=widgets.Layout(width="100%", height="4em"))
        self.access_key = widgets.Text(description="Access key", placeholder="WCS (optional)")
        self.secret_key = widgets.Password(description="Secret key", placeholder="WCS (optional)")
        self.scope = widgets.Text(description="Scope", placeholder="bucket[:key]")
        self.start = widgets.Button(description="Start upload", icon="upload", button_style="primary")
        self.picker = FilePicker(
            lambda path, name: controller.start_from_form(self._request(source=str(path), filename=name)),
            engine=lambda: getattr(controller, "engine", None))  # browser files, streamed in slices
        self.message = widgets.HTML()
        for w, cls in ((self.path, "nbupload-path"), (self.url, "nbupload-url"),
                       (self.protocol, "nbupload-protocol"), (self.chunk, "nbupload-chunk"),
                       (self.fields, "nbupload-fields"), (self.access_key, "nbupload-access-key"),
                       (self.secret_key, "nbupload-secret-key"), (self.scope, "nbupload-scope"),
                       (self.start, "nbupload-start"), (self.picker, "nbupload-picker"),
                       (self.message, "nbupload-form-message")):
            w.add_class(cls)
        self.path.observe(self._complete, names="value")
        self.protocol.observe(self._protocol_changed, names="value")
        self.start.on_click(self._on_start)
        wcs = widgets.HBox([self.access_key, self.secret_key, self.scope])
        super().__init__([
            widgets.HTML("<b>New upload</b>"),
            self.path, self.url, widgets.HBox([self.protocol, self.chunk]), self.fields, wcs,
            widgets.HBox([self.start, self.picker]), self.message,
        ])
        self.add_class("nbupload-form")

    def _protocol_changed(self, change: Any) -> None:
        """Keep the URL box on the default endpoint of the chosen protocol, unless typed in."""
        if self._default_url is None:
            return
        if self.url.value.strip() in ("", self._default_url(change["old"])):
            self.url.value = self._default_url(change["new"])

    def _complete(self, change: Any) -> None:
        self.path.options = tuple(complete_path(change["new"]))

    def _request(self, **source: Any) -> StartRequest:
        return StartRequest(
            url=self.url.value.strip(), protocol=self.protocol.value, chunk_size=self.chunk.value.strip(),
            fields=self.fields.value, access_key=self.access_key.value.strip(),
            secret_key=self.secret_key.value, scope=self.scope.value.strip(), **source,
        )

    def _say(self, text: str, error: bool = False) -> None:
        cls = "nbupload-error" if error else "nbupload-info"
        self.message.value = f'<span class="{cls}">{html.escape(text)}</span>' if text else ""

    def _submit(self, request: StartRequest) -> None:
        try:
            task_id = self.controller.start_from_form(request)
        except Exception as exc:  # noqa: BLE001 - shown in the form, never as a traceback
            self._say(str(exc) or type(exc).__name__, error=True)
        else:
            note = ""
            if self.secret_key.value:
                # the widget's value lives in the frontend's model (and in saved widget state):
                # keep the secret there no longer than needed
                self.secret_key.value = ""
                note = " (secret key cleared from the form)"
            self._say(f"started {task_id}{note}")

    def _on_start(self, _button: Any) -> None:
        path = self.path.value.strip()
        if not path:
            self._say("choose a file first", error=True)
            return
        full = Path(os.path.expanduser(path))
        self._submit(self._request(source=str(full), filename=full.name))


class UploadPanel(_FullText, widgets.VBox):
    """Every task of the kernel, a summary line, the resume offers and the form."""

    def __init__(self, controller: Controller, rows: Callable[[], Sequence[TaskRow]], *,
                 form: UploadForm | None = None) -> None:
        self.controller = controller
        self._rows = rows
        self.style = widgets.HTML(f"<style>{BAR_CSS}</style>")
        self.summary = widgets.HTML()
        self.summary.add_class("nbupload-summary")
        self.offers = widgets.VBox()
        self.offers.add_class("nbupload-offers")
        self.rows_box = widgets.VBox(layout=widgets.Layout(width="100%"))
        self.rows_box.add_class("nbupload-rows")
        self.form = form
        children = [self.style, self.summary, self.offers, self.rows_box]
        if form is not None:
            children.append(form)
        super().__init__(children, layout=widgets.Layout(width="100%"))
        self.add_class("nbupload-panel")
        self.refresh()

    def refresh(self) -> None:
        """Re-read the row list (a task was added) and the summary."""
        rows = list(self._rows())
        if tuple(rows) != tuple(self.rows_box.children):
            self.rows_box.children = rows
        snaps = [r.snapshot for r in rows]
        text = summary_text(snaps) if len(snaps) > 1 else ""
        if not snaps:
            text = "No uploads yet."
        self.summary.value = f'<span class="nbupload-summary-text">{html.escape(text)}</span>' if text else ""

    def set_offers(self, offers: Sequence[tuple[str, str]]) -> None:
        """``offers``: (task id, description) of unfinished tasks found in the journal."""
        if not offers:
            self.offers.children = ()
            return
        items: list[widgets.Widget] = [widgets.HTML(
            f"<b>{len(offers)} unfinished upload{'s' if len(offers) != 1 else ''} from a previous session</b>"
        )]
        for task_id, text in offers:
            button = widgets.Button(description="Resume", icon="play", layout=widgets.Layout(width="auto"))
            button.add_class("nbupload-offer-resume")
            button.on_click(lambda _b, t=task_id: self.controller.resume_offer(t))
            label = widgets.Label(text)
            items.append(widgets.HBox([button, label]))
        if len(offers) > 1:
            every = widgets.Button(description="Resume all", icon="play", layout=widgets.Layout(width="auto"))
            every.add_class("nbupload-offer-resume-all")
            every.on_click(lambda _b: self.controller.resume_offer(None))
            items.append(every)
        self.offers.children = items

    def __repr__(self) -> str:
        snaps = [r.snapshot for r in self._rows()]
        lines = [summary_text(snaps) or "No uploads yet."] if len(snaps) != 1 else []
        lines += [text_line(s) for s in snaps]
        return "\n".join(lines)
