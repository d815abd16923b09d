"""The extension's state in one shell: engine wiring, configuration, spools and lifecycle.

:class:`UploadSession` owns everything the front end adds to a kernel: the ``Uploader``
configurable, one engine subscription, the :class:`~nbupload.panel.controller.PanelController`
(rows, panel, form, offers, the UI pump), the embedded reference server
(:mod:`nbupload.ipython.demo_server`) and spool files of in-memory uploads. Tasks belong to
the engine and keep running across ``%reload_ext nbupload``; so do the embedded server and
the rows already displayed, which the next session adopts (:meth:`UploadSession.hand_over`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from traitlets import TraitError

from ..engine.state import FINAL_STATES, TaskEvent
from .config import Uploader
from .demo_server import EmbeddedServer, start_embedded

__all__ = ["Handover", "UploadSession"]


def _engine_factory() -> Any:
    from ..api import get_engine

    return get_engine()


class Handover:
    """What a session unloaded by ``%reload_ext`` leaves to the next: server, rows, spools, offers."""

    def __init__(
        self, server: EmbeddedServer | None, detached: Any, spools: dict[str, Path], offers: list[Any]
    ) -> None:
        self.server = server
        self.detached = detached
        self.spools = spools
        self.offers = offers


class UploadSession:
    """The extension's state in one shell (see the module docstring)."""

    def __init__(
        self, shell: Any, engine_factory: Callable[[], Any] | None = None, handover: Handover | None = None
    ) -> None:
        self.shell = shell
        self._engine_factory = engine_factory
        self._engine: Any = None
        self._unsubscribe: Callable[[], None] | None = None
        try:
            self.config = Uploader(parent=shell, on_change=self._configure_engine)
        except TraitError as exc:  # a bad value in ipython_config.py must not stop the extension
            print(f"nbupload: ignoring the Uploader configuration: {exc}", file=sys.stderr)
            self.config = Uploader(on_change=self._configure_engine)
        self.server: EmbeddedServer | None = handover.server if handover else None
        self.spools: dict[str, Path] = dict(handover.spools) if handover else {}
        self._spool_lock = threading.Lock()
        from ..panel.controller import PanelController
        from ..panel.pump import kernel_scheduler

        self.panel_controller = PanelController(
            self,
            kernel_scheduler(shell),
            interval=max(self.config.progress_interval, 0.1),
            form_defaults=self._form_defaults,
        )
        self._handover = handover
        self.magics: Any = None
        #: text fallbacks displayed in the running cell: (display handle, text of now)
        self._fallbacks: list[tuple[Any, Callable[[], str]]] = []

    # -- the controller's parts, as the magics and tests know them ---------------------------
    @property
    def pump(self) -> Any:
        return self.panel_controller.pump

    @property
    def rows(self) -> dict[str, Any]:
        return self.panel_controller.rows

    @property
    def panel(self) -> Any:
        return self.panel_controller.panel

    @property
    def form(self) -> Any:
        return self.panel_controller.form

    @property
    def offers(self) -> list[Any]:
        return self.panel_controller.offers

    def _form_defaults(self) -> dict[str, Any]:
        return {
            "url": self.default_url(self.config.protocol),
            "protocol": self.config.protocol,
            "chunk_size": _size_text(self.config.chunk_size),
            "default_url": self.default_url,
        }

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
            self.panel_controller.pump.interval = max(float(changes["progress_interval"]), 0.1)
        if self._engine is not None:
            self._engine.configure(**changes)

    def _on_event(self, event: TaskEvent) -> None:
        """Engine thread: never touches a widget; hands over to the pump."""
        snap = event.snapshot
        if snap.state in FINAL_STATES:
            self._drop_spool(snap.id)
        self.panel_controller.on_event(event)

    def _drop_spool(self, task_id: str) -> None:
        with self._spool_lock:
            path = self.spools.pop(task_id, None)
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()

    def spool_dir(self) -> Path:
        from ..engine.config import default_home

        return default_home() / "spool"

    # -- what the magics ask of the panel -------------------------------------------------------
    def row_for(self, task: Any) -> Any:
        return self.panel_controller.row_for(task)

    def get_panel(self) -> Any:
        return self.panel_controller.get_panel()

    # -- displaying, with a text fallback for saved notebooks (nbupload/panel/fallback.py) -------
    def display_row(self, task: Any) -> None:
        """Show ``task``'s live row, and after it the text a saved notebook shows instead."""
        from IPython.display import display

        from ..panel.fallback import row_fallback_text

        row = self.row_for(task)
        display(row)
        self._display_fallback(lambda: row_fallback_text(self._snapshot(row)))

    def display_batch(self, batch: Any) -> None:
        """Show ``batch``'s live row, and after it the text a saved notebook shows instead."""
        from IPython.display import display

        display(self.batch_row(batch))
        self._display_fallback(lambda: f"nbupload: batch {batch.id}: {batch.snapshot().describe()}")

    def display_panel(self) -> None:
        from IPython.display import display

        from ..panel.fallback import panel_fallback_text

        display(self.get_panel())
        self._display_fallback(
            lambda: panel_fallback_text(self._snapshot(r) for r in list(self.panel_controller.rows.values()))
        )

    def _snapshot(self, row: Any) -> Any:
        """The task's state now (the engine's; the row's when the engine has dropped it)."""
        try:
            return self.engine.get(row.task_id).snapshot()
        except KeyError:
            return row.snapshot

    def _display_fallback(self, text: Callable[[], str]) -> None:
        if getattr(self.shell, "kernel", None) is None:
            return  # a terminal shows the widget's text already; only notebooks are saved
        from IPython.display import display

        from ..panel.fallback import fallback_bundle

        handle = display(fallback_bundle(text()), raw=True, display_id=True)
        if handle is not None:
            self._fallbacks.append((handle, text))

    def _post_run_cell(self, *_result: Any) -> None:
        """The displaying cell ends: its fallbacks take the state of now (see fallback.py)."""
        from ..panel.fallback import fallback_bundle

        pending, self._fallbacks = self._fallbacks, []
        for handle, text in pending:
            with contextlib.suppress(Exception):  # a display update must never fail a cell
                handle.update(fallback_bundle(text()), raw=True)

    def resume(self, task_id: str | None) -> list[Any]:
        """Resume one task (here or in the journal), or every paused, failed and journaled one.

        WCS tasks aimed at the demo server get its key pair again (the journal never holds
        credentials). Tasks another process is running are skipped when resuming all.
        """
        from ..engine import TaskLockedError

        engine = self.engine
        if task_id is not None and task_id in {b.id for b in self.unfinished_batches()}:
            return [self.resume_batch(task_id)]  # a batch offer: resumed as one (its row shows it)
        if task_id is not None:
            return list(engine.resume(task_id, **self._credentials_for(self._url_of(task_id))))
        from ..batch import resumable_alone

        wanted = resumable_alone(engine)  # a batch's files go through their batch
        out: list[Any] = []
        for one in wanted:
            try:
                out += engine.resume(one, **self._credentials_for(self._url_of(one)))
            except (KeyError, TaskLockedError):
                continue  # finished or taken by another process meanwhile
        return out

    def _url_of(self, task_id: str) -> str:
        try:
            url: str = self.engine.get(task_id).url
            return url
        except KeyError:
            pass
        for entry in self.engine.unfinished():
            if entry.id == task_id:
                found: str = entry.url
                return found
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
        return str(task.id)

    # -- submitting -------------------------------------------------------------------------
    def default_url(self, protocol: str) -> str:
        if self.config.default_url and self.config.default_url != self._default_url_from_server:
            return self.config.default_url
        if self.server is not None:
            return self.server_url(protocol)
        return ""

    def server_url(self, protocol: str) -> str:
        assert self.server is not None
        if protocol == "wcs-append":
            return self.server.base_url
        return self.server.upload_url

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
                os.path.basename(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else None
            )
            if scope and ":" not in scope and name:
                options["key"] = name  # the object key defaults to the file's name
        task = self.engine.submit(source, url, labels=self._labels(url), **options)
        if spool is not None:
            with self._spool_lock:
                self.spools[task.id] = spool
            if task.state in FINAL_STATES:
                self._drop_spool(task.id)
        self.panel_controller.on_event(task.snapshot())
        return task

    # -- batches (nbupload/batch/; one row each, panel/batchrow.py) ---------------------------
    def submit_batch(self, paths: list[str], url: str, **options: Any) -> Any:
        """``nbupload.upload_many`` on this session's engine, with the demo server's key pair for
        WCS batches to it (as :meth:`submit`)."""
        from ..batch import upload_many

        options = {k: v for k, v in options.items() if v is not None}
        options.update(self._wcs_demo_credentials(url, options))
        # its notebook, as each task's: the record keeps it, so its offer is this notebook's
        options.setdefault("labels", self._labels(url))
        batch = upload_many(paths, url, engine=self.engine, **options)
        self.batch_row(batch)  # its tasks' events go to this row from the first one
        return batch

    def _wcs_demo_credentials(self, url: str, options: dict[str, Any]) -> dict[str, Any]:
        if (
            options.get("protocol") == "wcs-append"
            and self.server is not None
            and self.server.serves(url)
            and not options.get("token")
            and not options.get("secret_key")
        ):
            return {
                "access_key": options.get("access_key") or self.server.access_key,
                "secret_key": self.server.secret_key,
                "scope": options.get("scope") or "demo",
            }
        return {}

    def batch_row(self, batch: Any) -> Any:
        from ..panel.batchrow import batch_row

        return batch_row(self.panel_controller, batch)

    def batches(self) -> list[Any]:
        """The live batches of this session's engine."""
        if "nbupload.batch" not in sys.modules:
            return []
        from ..batch import batches

        return batches(self.engine)

    def unfinished_batches(self) -> list[Any]:
        """Batches left in the journal by an earlier kernel."""
        return self._unfinished_batches(None)

    def _unfinished_batches(self, entries: list[Any] | None) -> list[Any]:
        from ..batch import unfinished_batches

        try:
            return unfinished_batches(self.engine, entries=entries)
        except OSError:
            return []

    def resume_batch(self, batch_id: str) -> Any:
        """A journaled batch as one again (credentials of the demo server given back)."""
        from ..batch import resume_batch

        found = next((b for b in self.unfinished_batches() if b.id == batch_id), None)
        url, protocol = (found.url, found.protocol) if found is not None else ("", "")
        creds = self._wcs_demo_credentials(url, {"protocol": protocol})
        creds.pop("scope", None)
        batch = resume_batch(batch_id, engine=self.engine, **creds)
        self.batch_row(batch)
        batch.wait_adopted()  # its files' journal entries are its own before anything else resumes
        return batch

    @staticmethod
    def notebook() -> str | None:
        """The notebook this kernel runs: Jupyter sets ``JPY_SESSION_NAME`` to its path (it
        survives a kernel restart); ``None`` outside Jupyter (terminal IPython)."""
        return os.environ.get("JPY_SESSION_NAME") or None

    def _labels(self, url: str) -> dict[str, str]:
        """What the journal notes of a new task: its notebook, and whether it goes to the
        embedded server (and that server's root, when it outlives the server)."""
        labels: dict[str, str] = {}
        notebook = self.notebook()
        if notebook:
            labels["notebook"] = notebook
        if self.server is not None and self.server.serves(url):
            labels.update(self.server.labels())
        return labels

    # -- embedded server ----------------------------------------------------------------------
    def start_server(self, **kwargs: Any) -> EmbeddedServer:
        """Start the embedded server. On a root given again (``--root``) and no port, it takes
        the port of the journal's latest upload to an earlier server on that root when free,
        so those uploads' URLs hold (:meth:`resume_for_server` then resumes them)."""
        if self.server is not None:
            return self.server
        old_port = self._port_for_root(kwargs.get("root")) if not kwargs.get("port") else None
        server = None
        if old_port:
            with contextlib.suppress(OSError, RuntimeError):  # taken by now: any free port
                server = start_embedded(**{**kwargs, "port": old_port})
        self.server = server or start_embedded(**kwargs)
        if not self.config.default_url:
            # as %config Uploader says: the demo server becomes the default URL
            self.config.default_url = self.server.upload_url
            self._default_url_from_server = self.config.default_url
        form = self.panel_controller.form
        if form is not None:
            with self.panel_controller.lock:
                if not form.url.value:
                    form.url.value = self.default_url(form.protocol.value)
        return self.server

    def _port_for_root(self, root: Any) -> int | None:
        if root is None:
            return None
        want = os.path.realpath(os.fspath(root))
        try:
            entries = [u for u in self.engine.unfinished() if u.labels.get("server_root") == want]
        except Exception:  # noqa: BLE001 - a broken journal must not stop the server
            return None
        entries.sort(key=lambda u: u.updated_at or 0.0)
        for entry in reversed(entries):
            with contextlib.suppress(ValueError):
                port: int | None = urlsplit(str(entry.url)).port
                if port:
                    return port
        return None

    def resume_for_server(self) -> list[Any]:
        """Resume the journal's uploads to an earlier embedded server on this one's root and
        URL (what ``%upload server start --root DIR`` does after starting); refresh the offers."""
        from ..engine import TaskLockedError

        server = self.server
        if server is None or not server.persistent:
            return []
        root = os.path.realpath(server.root)
        out: list[Any] = []
        for entry in self.engine.unfinished():
            if entry.locked or entry.labels.get("server_root") != root or not server.serves(entry.url):
                continue
            try:
                out += self.engine.resume(entry.id, **self._credentials_for(entry.url))
            except (KeyError, TaskLockedError, ValueError):
                continue  # finished or taken meanwhile
        self.panel_controller.set_offers(self.find_unfinished())
        return out

    _default_url_from_server = ""

    def stop_server(self) -> list[str] | None:
        """Stop the embedded server (pausing uploads to it); None when none was running."""
        server, self.server = self.server, None
        if server is None:
            return None
        if self._default_url_from_server and self.config.default_url == self._default_url_from_server:
            self.config.default_url = ""
        self._default_url_from_server = ""
        paused = server.stop(self._engine)
        for task_id in paused:
            with contextlib.suppress(KeyError):
                self.panel_controller.on_event(self.engine.get(task_id).snapshot())
        return paused

    # -- journal ------------------------------------------------------------------------------
    def find_unfinished(self) -> list[Any]:
        """Offers (:class:`~nbupload.panel.widgets.Offer`) for the journal's unfinished tasks."""
        return self.journal_view()[0]

    def journal_view(self) -> tuple[list[Any], list[Any]]:
        """``(offers, batches)``: the offers of :meth:`find_unfinished` and the journal's
        unfinished batches (:class:`~nbupload.batch.UnfinishedBatch`), the task entries and
        the batch records read once (``%upload list`` shows both; each read opens every
        entry and record)."""
        from ..panel.controller import describe_offer

        try:
            entries = list(self.engine.unfinished())
        except Exception as exc:  # noqa: BLE001 - a broken journal must not break the kernel
            print(f"nbupload: could not read the task journal: {exc}", file=sys.stderr)
            return [], self._unfinished_batches([])
        from ..panel.batchrow import batch_offers

        notebook = self.notebook()
        waiting = self._unfinished_batches(entries)
        offers, entries = batch_offers(self.engine, entries, notebook=notebook, waiting=waiting)
        return offers + [describe_offer(e, notebook=notebook) for e in entries], waiting

    # -- lifecycle ------------------------------------------------------------------------------
    def open(self, magics: Any) -> None:
        """Register the configurable and the magics, adopt a previous session's rows, offer
        the journal's unfinished tasks."""
        shell = self.shell
        if self.config not in shell.configurables:
            shell.configurables.append(self.config)
        self.magics = magics
        shell.register_magics(magics)
        from .magics import help_transformer

        cleanup = getattr(shell, "input_transformers_cleanup", None)
        if cleanup is not None and help_transformer not in cleanup:
            cleanup.append(help_transformer)
        shell.events.register("post_run_cell", self._post_run_cell)
        handover, self._handover = self._handover, None
        if handover is not None:
            self.engine  # noqa: B018 - subscribe before adopting, so no event is missed
            self.panel_controller.adopt(handover.detached)
            if self.server is not None and not self.config.default_url:
                self.config.default_url = self._default_url_from_server = self.server.upload_url
            self.panel_controller.set_offers(handover.offers)
            return
        offers = self.find_unfinished()
        self.panel_controller.set_offers(offers)
        mine = [o for o in offers if o.mine]
        others = len(offers) - len(mine)
        elsewhere = (
            f"; {others} more from other notebooks or programs (`%upload list`, or Show all in the panel)"
            if others
            else ""
        )
        if mine and self.config.auto_resume:
            resumed: list[Any] = []
            for offer in mine:
                if offer.resumable:
                    with contextlib.suppress(KeyError, RuntimeError, ValueError, OSError):
                        resumed += self.resume(offer.id)
            self.panel_controller.set_offers(self.find_unfinished())
            print(f"nbupload: resumed {len(resumed)} unfinished upload(s) from the journal{elsewhere}")
        elif mine:
            n = len(mine)
            ids = ", ".join(o.id for o in mine[:5]) + (" ..." if n > 5 else "")
            print(
                f"nbupload: {n} unfinished upload{'s' if n != 1 else ''} "
                f"from a previous session ({ids}): "
                f"`%upload list`, `%upload resume all`, or Resume/Forget in `%upload panel`{elsewhere}"
            )
        elif others:
            print(
                f"nbupload: {others} unfinished upload{'s' if others != 1 else ''} from other notebooks "
                "or programs: `%upload list`, or Show all in `%upload panel`"
            )

    def _unregister(self) -> None:
        shell = self.shell
        if self._unsubscribe is not None:
            with contextlib.suppress(Exception):
                self._unsubscribe()
            self._unsubscribe = None
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
        with contextlib.suppress(ValueError):
            shell.events.unregister("post_run_cell", self._post_run_cell)
        from .magics import help_transformer

        with contextlib.suppress(ValueError, AttributeError):
            shell.input_transformers_cleanup.remove(help_transformer)

    def hand_over(self) -> Handover:
        """Unload for a reload: keep the server, the rows and the spools for the next session."""
        self._unregister()
        detached = self.panel_controller.detach()
        with self._spool_lock:
            spools = dict(self.spools)
        handover = Handover(self.server, detached, spools, list(self.panel_controller.offers))
        self.server = None
        return handover

    def close(self) -> list[str] | None:
        """Unload for good: stop the embedded server (pausing uploads to it), close the widgets.

        Returns the ids paused by stopping the server (None: no server was running).
        """
        self._unregister()
        self.panel_controller.close()
        return self.stop_server()


def _size_text(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)
