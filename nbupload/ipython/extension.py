"""``%load_ext nbupload``: one :class:`UploadSession` per shell, torn down cleanly on unload.

The session owns everything the front end adds to a kernel: the ``Uploader`` configurable,
the ``%upload`` magics, one engine subscription feeding one :class:`UIPump`, the task
rows and the panel (widgets, i.e. comms), the embedded reference server when started from
a magic, and spool files of in-memory uploads. Unloading undoes each of these, so
``%reload_ext nbupload`` leaves no duplicate handler, thread or comm behind. Tasks
themselves belong to the engine and keep running across a reload.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from traitlets import TraitError

from ..engine.state import FINAL_STATES, TaskEvent, TaskSnapshot, TaskState
from .config import Uploader

__all__ = ["UploadSession", "current_session", "load_ipython_extension", "unload_ipython_extension"]

_SESSIONS: dict[int, UploadSession] = {}
_LOCK = threading.Lock()


def current_session(shell: Any) -> UploadSession | None:
    return _SESSIONS.get(id(shell))


def _engine_factory() -> Any:
    from ..api import get_engine

    return get_engine()


class EmbeddedServer:
    """The reference server started by ``%upload server start`` and its demo WCS key pair.

    The secret key lives only here (never printed, never in a repr).
    """

    def __init__(self, handle: Any, access_key: str, secret_key: str) -> None:
        self.handle = handle
        self.access_key = access_key
        self._secret_key = secret_key

    @property
    def secret_key(self) -> str:
        return self._secret_key

    @property
    def base_url(self) -> str:
        return str(self.handle.url).rstrip("/")

    def serves(self, url: str) -> bool:
        url = str(url)
        return url == self.base_url or url.startswith(self.base_url + "/")

    def __repr__(self) -> str:
        return f"EmbeddedServer(url={self.base_url!r}, root={str(self.handle.root)!r}, access_key={self.access_key!r})"


class UploadSession:
    """The extension's state in one shell (see the module docstring)."""

    def __init__(self, shell: Any, engine_factory: Callable[[], Any] | None = None) -> None:
        self.shell = shell
        self._engine_factory = engine_factory
        self._engine: Any = None
        self._unsubscribe: Callable[[], None] | None = None
        try:
            self.config = Uploader(parent=shell, on_change=self._configure_engine)
        except TraitError as exc:  # a bad value in ipython_config.py must not stop the extension
            print(f"nbupload: ignoring the Uploader configuration: {exc}", file=sys.stderr)
            self.config = Uploader(on_change=self._configure_engine)
        self.server: EmbeddedServer | None = None
        self.rows: dict[str, Any] = {}
        self.panel: Any = None
        self.form: Any = None
        self.spools: dict[str, Path] = {}
        self._spool_lock = threading.Lock()
        self.offers: list[tuple[str, str]] = []
        from ..panel.pump import UIPump, kernel_scheduler

        self.scheduler = kernel_scheduler(shell)
        self.pump = UIPump(self._apply, self.scheduler, interval=max(self.config.progress_interval, 0.1))
        self.magics: Any = None

    # -- engine ---------------------------------------------------------------------------
    @property
    def engine(self) -> Any:
        if self._engine is None:
            engine = (self._engine_factory or _engine_factory)()
            settings = self.config.engine_settings(changed_only=True)
            if settings:
                engine.configure(**settings)
            self._engine = engine
            self._unsubscribe = engine.subscribe(self._on_event)
        return self._engine

    def _configure_engine(self, changes: dict[str, Any]) -> None:
        if "progress_interval" in changes:
            self.pump.interval = max(float(changes["progress_interval"]), 0.1)
        if self._engine is not None:
            self._engine.configure(**changes)

    def _on_event(self, event: TaskEvent) -> None:
        """Engine thread: never touches a widget; hands over to the pump."""
        snap = event.snapshot
        if snap.state in FINAL_STATES:
            self._drop_spool(snap.id)
        self.pump.push(event)

    def _drop_spool(self, task_id: str) -> None:
        with self._spool_lock:
            path = self.spools.pop(task_id, None)
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()

    def spool_dir(self) -> Path:
        from ..engine.config import default_home

        return default_home() / "spool"

    # -- UI thread ------------------------------------------------------------------------
    def _apply(self, snaps: list[TaskSnapshot]) -> None:
        added = False
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

    def _new_row(self, snap: TaskSnapshot) -> Any:
        from ..panel.widgets import TaskRow

        row = TaskRow(snap, self.task_action)
        self.rows[snap.id] = row
        return row

    def row_for(self, task: Any) -> Any:
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
        from ..panel.widgets import UploadForm, UploadPanel

        # Rows shown earlier may hold stale snapshots: with no event loop (terminal IPython)
        # nothing flushes the pump by itself. Let the engine deliver the state events posted
        # so far (briefly: this is the kernel's thread), then apply them here, in order.
        self.engine.flush_events(0.5)
        self.pump.flush(force=True)
        if self.panel is None:
            for task in self.engine.tasks():
                if task.id not in self.rows:
                    self._new_row(task.snapshot())
            self.form = UploadForm(self, url=self.default_url(self.config.protocol), protocol=self.config.protocol,
                                   chunk_size=_size_text(self.config.chunk_size), default_url=self.default_url)
            self.panel = UploadPanel(self, lambda: list(self.rows.values()), form=self.form)
            self.panel.set_offers(self.offers)
        else:
            self.panel.refresh()
        return self.panel

    def task_action(self, task_id: str, action: str) -> None:
        """A row's button: pause, resume, cancel or retry (resume/retry bring the demo keys back)."""
        try:
            task = self.engine.get(task_id)
        except KeyError:
            return
        if action in ("resume", "retry"):
            self.resume(task_id)
        else:
            getattr(task, action)()
        self.pump.push(task.snapshot())

    def resume_offer(self, task_id: str | None) -> None:
        tasks = self.resume(task_id)
        done = {t.id for t in tasks}
        self.offers = [(i, text) for i, text in self.offers if i not in done and task_id is not None]
        if self.panel is not None:
            for task in tasks:
                if task.id not in self.rows:
                    self._new_row(task.snapshot())
            self.panel.set_offers(self.offers)
            self.panel.refresh()

    def resume(self, task_id: str | None) -> list[Any]:
        """Resume one task (here or in the journal), or every paused, failed and journaled one.

        WCS tasks aimed at the demo server get its key pair again (the journal never holds
        credentials). Tasks another process is running are skipped when resuming all.
        """
        from ..engine import TaskLockedError

        engine = self.engine
        if task_id is not None:
            return list(engine.resume(task_id, **self._credentials_for(self._url_of(task_id))))
        wanted = [t.id for t in engine.tasks() if t.can_resume]
        wanted += [u.id for u in engine.unfinished() if not u.locked]
        out: list[Any] = []
        for one in wanted:
            try:
                out += engine.resume(one, **self._credentials_for(self._url_of(one)))
            except (KeyError, TaskLockedError):
                continue  # finished or taken by another process meanwhile
        return out

    def _url_of(self, task_id: str) -> str:
        try:
            return self.engine.get(task_id).url
        except KeyError:
            pass
        for entry in self.engine.unfinished():
            if entry.id == task_id:
                return entry.url
        return ""

    def _credentials_for(self, url: str) -> dict[str, str]:
        if self.server is not None and url and self.server.serves(url):
            return {"access_key": self.server.access_key, "secret_key": self.server.secret_key}
        return {}

    def start_from_form(self, request: dict[str, Any]) -> str:
        from ..units import parse_size
        from .options import parse_fields

        url = request.get("url") or self.default_url(request.get("protocol") or self.config.protocol)
        if not url:
            raise ValueError("give an upload URL (or start the demo server: %upload server start)")
        source = request["source"]
        if isinstance(source, str) and not os.path.isfile(source):
            raise ValueError(f"no such file on the kernel's filesystem: {source}")
        options: dict[str, Any] = {"protocol": request.get("protocol") or self.config.protocol}
        if request.get("chunk_size"):
            options["chunk_size"] = parse_size(request["chunk_size"])
        if request.get("fields"):
            options["fields"] = parse_fields(request["fields"].splitlines())
        if request.get("filename"):
            options["filename"] = request["filename"]
        for key in ("access_key", "secret_key", "scope", "token"):
            if request.get(key):
                options[key] = request[key]
        task = self.submit(source, url, **options)
        return task.id

    # -- submitting -------------------------------------------------------------------------
    def default_url(self, protocol: str) -> str:
        if self.config.default_url:
            return self.config.default_url
        if self.server is not None:
            return self.server_url(protocol)
        return ""

    def server_url(self, protocol: str) -> str:
        assert self.server is not None
        if protocol == "wcs-append":
            return self.server.base_url
        return str(self.server.handle.upload_url)

    def submit(self, source: Any, url: str, *, spool: Path | None = None, **options: Any) -> Any:
        """``engine.submit`` plus the demo server's key pair for WCS uploads to it."""
        options = {k: v for k, v in options.items() if v is not None}
        if (
            options.get("protocol") == "wcs-append"
            and self.server is not None
            and self.server.serves(url)
            and not options.get("token")
            and not options.get("secret_key")
        ):
            options.setdefault("access_key", self.server.access_key)
            options["secret_key"] = self.server.secret_key
            options.setdefault("scope", "demo")
        if options.get("protocol") == "wcs-append" and not options.get("key"):
            scope = options.get("scope")
            name = options.get("filename") or (
                os.path.basename(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else None)
            if scope and ":" not in scope and name:
                options["key"] = name  # the object key defaults to the file's name
        task = self.engine.submit(source, url, **options)
        if spool is not None:
            with self._spool_lock:
                self.spools[task.id] = spool
            if task.state in FINAL_STATES:
                self._drop_spool(task.id)
        self.pump.push(task.snapshot())
        return task

    # -- embedded server ----------------------------------------------------------------------
    def start_server(self, **kwargs: Any) -> EmbeddedServer:
        if self.server is not None:
            return self.server
        from ..server import start_server

        access_key = "demo" + secrets.token_hex(4)
        secret_key = secrets.token_urlsafe(24)
        handle = start_server(credentials={access_key: secret_key}, **kwargs)
        self.server = EmbeddedServer(handle, access_key, secret_key)
        if self.form is not None and not self.form.url.value:
            self.form.url.value = self.default_url(self.form.protocol.value)
        return self.server

    def stop_server(self) -> bool:
        server, self.server = self.server, None
        if server is None:
            return False
        server.handle.stop()
        return True

    # -- journal ------------------------------------------------------------------------------
    def find_unfinished(self) -> list[tuple[str, str]]:
        try:
            entries = list(self.engine.unfinished())
        except Exception as exc:  # noqa: BLE001 - a broken journal must not break the kernel
            print(f"nbupload: could not read the task journal: {exc}", file=sys.stderr)
            return []
        return [(_entry_id(e), _entry_text(e)) for e in entries]

    # -- lifecycle ------------------------------------------------------------------------------
    def open(self) -> None:
        shell = self.shell
        if self.config not in shell.configurables:
            shell.configurables.append(self.config)
        from .magics import UploadMagics

        self.magics = UploadMagics(shell, self)
        shell.register_magics(self.magics)
        self.offers = self.find_unfinished()
        if self.offers:
            if self.config.auto_resume:
                resumed = self.resume(None)
                self.offers = []
                print(f"nbupload: resumed {len(resumed)} unfinished upload(s) from the journal")
            else:
                n = len(self.offers)
                ids = ", ".join(i for i, _ in self.offers[:5]) + (" ..." if n > 5 else "")
                print(
                    f"nbupload: {n} unfinished upload{'s' if n != 1 else ''} from a previous session ({ids}): "
                    "`%upload resume all`, or the Resume button in `%upload panel`"
                )

    def close(self) -> None:
        shell = self.shell
        if self._unsubscribe is not None:
            with contextlib.suppress(Exception):
                self._unsubscribe()
            self._unsubscribe = None
        self.pump.close()
        self.stop_server()
        if self.magics is not None:
            for kind in ("line", "cell"):
                table = shell.magics_manager.magics[kind]
                for name, fn in list(table.items()):
                    if getattr(fn, "__self__", None) is self.magics:
                        del table[name]
            shell.magics_manager.registry.pop(type(self.magics).__name__, None)
            self.magics = None
        with contextlib.suppress(ValueError):
            shell.configurables.remove(self.config)
        widgets_to_close = [*self.rows.values()]
        if self.panel is not None:
            widgets_to_close.append(self.panel)
        for w in widgets_to_close:
            _close_tree(w)
        self.rows.clear()
        self.panel = self.form = None


def _close_tree(widget: Any) -> None:
    for child in getattr(widget, "children", ()) or ():
        _close_tree(child)
    with contextlib.suppress(Exception):
        widget.close()


def _size_text(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


def _entry_id(entry: Any) -> str:
    if isinstance(entry, dict):
        return str(entry.get("id"))
    return str(getattr(entry, "id", entry))


def _entry_text(entry: Any) -> str:
    snap = entry.snapshot() if callable(getattr(entry, "snapshot", None)) else getattr(entry, "snapshot", None)
    if isinstance(snap, TaskSnapshot):
        from ..panel.format import text_line

        return text_line(snap)
    get = entry.get if isinstance(entry, dict) else (lambda k, d=None: getattr(entry, k, d))
    name = get("name") or get("filename") or get("path") or "?"
    return f"{name} [{_entry_id(entry)}] -> {get('url', '')}"


def load_ipython_extension(ipython: Any) -> None:
    with _LOCK:
        if id(ipython) in _SESSIONS:  # a second %load_ext is a no-op, as IPython's own is
            return
        session = UploadSession(ipython)
        _SESSIONS[id(ipython)] = session
    try:
        session.open()
    except BaseException:
        with _LOCK:
            _SESSIONS.pop(id(ipython), None)
        session.close()
        raise


def unload_ipython_extension(ipython: Any) -> None:
    with _LOCK:
        session = _SESSIONS.pop(id(ipython), None)
    if session is not None:
        session.close()

