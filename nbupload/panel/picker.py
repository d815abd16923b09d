"""Files picked or dropped in the browser, streamed to the kernel's disk in slices.

Theory of operation. ipywidgets' ``FileUpload`` sends a whole selection in one websocket
message: past Tornado's 10 MiB limit the connection drops and nothing arrives, and what
does arrive is held whole in kernel memory. Here each file travels instead as a series of
binary widget messages (anywidget; the bytes ride as message buffers, not base64 JSON):

1. The browser sends ``begin`` (name, size, lastModified). The kernel opens the file's
   *spool* in ``$NBUPLOAD_HOME/spool/browser/``: a data file (sparse, written at offsets)
   and a sidecar JSON holding which byte ranges it has. The spool is found again by the
   file's identity (name, size, lastModified), so after a page reload or a kernel restart
   picking the same file again continues where it stopped. The kernel answers ``need``:
   the missing ranges, the slice size and how many slices may be in flight.
2. The browser reads one slice at a time with ``File.slice`` and sends it as ``slice``
   (offset + one buffer); at most ``window`` slices are unacknowledged. The kernel writes
   each at its offset, records it in the sidecar and answers ``ack``; only then does the
   browser send another. Neither side ever holds more than ``window`` slices.
3. When every byte is there, the kernel hands the spool file to ``submit`` (the form's
   normal path into the engine: journaled, resumable) and answers ``done`` with the task
   id; the task's row shows the kernel-to-server leg, and so does the pick, under its
   browser-to-kernel bar (:meth:`PickerCore.note_tasks`, fed by the panel's UI pump). The
   spool is removed when that task is done or cancelled (an engine event), and stale spools
   (task finished or forgotten in the journal meanwhile, or a partial spool untouched for a
   week) are swept later.

Anything that cannot be taken (no space, a read error in the browser, a folder dropped)
ends in a ``stop`` answer or a message in the widget, never in silence.
:class:`PickerCore` holds the protocol without any widget, so it is tested alone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets
import traitlets

from ..engine.state import FINAL_STATES, TaskEvent, TaskState
from ..protocols.ranges import RangeSet
from ..units import format_size

__all__ = [
    "SLICE_SIZE",
    "WINDOW",
    "FilePicker",
    "PickError",
    "PickerCore",
    "Spool",
    "SpoolStore",
    "default_spool_root",
    "spool_key",
]

#: Bytes per browser message: far below Tornado's 10 MiB websocket limit, big enough that
#: the per-message round trip does not dominate.
SLICE_SIZE = 1 << 20
#: Slices in flight (sent, not yet acknowledged): bounds memory on both sides.
WINDOW = 4
#: A partial spool nobody continued for this long is swept.
PARTIAL_MAX_AGE = 7 * 24 * 3600.0
_STATIC = Path(__file__).parent / "static"


class PickError(Exception):
    """A file the kernel cannot take; the message is shown in the widget as is."""


def default_spool_root() -> Path:
    from ..engine.config import default_home

    return default_home() / "spool" / "browser"


def spool_key(name: str, size: int, last_modified: int) -> str:
    """The spool's name for one browser file: what the browser can tell again after a reload."""
    ident = json.dumps([name, int(size), int(last_modified)])
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


@dataclass
class Spool:
    """One browser file on the kernel's disk: ``KEY.data`` written at offsets, ``KEY.json``
    saying which ranges are there (written after the data, so it never claims too much)."""

    root: Path
    name: str
    size: int
    last_modified: int
    ranges: RangeSet = field(default_factory=RangeSet)
    received: int = 0  # every slice byte that arrived, duplicates included
    task_id: str | None = None
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    @property
    def key(self) -> str:
        return spool_key(self.name, self.size, self.last_modified)

    @property
    def data_path(self) -> Path:
        return self.root / f"{self.key}.data"

    @property
    def meta_path(self) -> Path:
        return self.root / f"{self.key}.json"

    @property
    def held(self) -> int:
        return self.ranges.covered()

    @property
    def complete(self) -> bool:
        return self.ranges.covers(self.size) and self.data_path.exists()

    def missing(self) -> list[list[int]]:
        return [[s, e] for s, e in self.ranges.missing(self.size).spans]

    @classmethod
    def load(cls, meta_path: Path) -> Spool | None:
        """The spool a sidecar describes, or None when it is unreadable or its data is gone."""
        try:
            d = json.loads(meta_path.read_text())
            spool = cls(
                root=meta_path.parent,
                name=str(d["name"]),
                size=int(d["size"]),
                last_modified=int(d["last_modified"]),
                ranges=RangeSet.parse(d.get("ranges")),
                received=int(d.get("received", 0)),
                task_id=d.get("task") or None,
                created=float(d.get("created", 0)),
                updated=float(d.get("updated", 0)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if spool.meta_path != meta_path or not spool.data_path.exists():
            return None
        return spool

    def save(self) -> None:
        self.updated = time.time()
        body = {
            "version": 1,
            "name": self.name,
            "size": self.size,
            "last_modified": self.last_modified,
            "ranges": str(self.ranges),
            "received": self.received,
            "task": self.task_id,
            "created": self.created,
            "updated": self.updated,
        }
        tmp = self.meta_path.with_suffix(f".json.{os.getpid()}-{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.meta_path)

    def write(self, offset: int, data: memoryview | bytes) -> None:
        """Write one slice at its offset, then record it (data first: a crash between the
        two only makes the browser send that slice again)."""
        n = len(data)
        if offset < 0 or offset + n > self.size:
            raise PickError(
                f"{self.name}: a slice at {offset} (+{n}) is outside the file's {self.size} bytes"
            )
        try:
            fd = os.open(self.data_path, os.O_WRONLY)
            try:
                view = memoryview(data).cast("B")
                done = 0
                while done < n:
                    done += os.pwrite(fd, view[done:], offset + done)
            finally:
                os.close(fd)
        except OSError as exc:
            raise PickError(_disk_problem(self, exc)) from exc
        self.received += n
        self.ranges = self.ranges.add(offset, offset + n)
        try:
            self.save()
        except OSError as exc:
            raise PickError(_disk_problem(self, exc)) from exc

    def remove(self) -> None:
        for path in (self.data_path, self.meta_path):
            with contextlib.suppress(OSError):
                path.unlink()


def _disk_problem(spool: Spool, exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"no space left on the kernel's disk for {spool.name} ({format_size(spool.held)} of "
            f"{format_size(spool.size)} arrived, kept in {spool.root}): free some space, then pick the "
            f"file again to continue"
        )
    return f"could not write {spool.name} to the kernel's disk ({spool.root}): {exc.strerror or exc}"


class SpoolStore:
    """The spool directory: open a file's spool (new or found again), list and sweep them."""

    def __init__(self, root: Path | None = None, *, free_space: Callable[[Path], int] | None = None) -> None:
        self.root = Path(root) if root is not None else default_spool_root()
        self._free_space = free_space or (lambda p: shutil.disk_usage(p).free)
        # the engine's thread removes spools of finished tasks while the kernel's thread may
        # open the same file's spool again: both go through this lock
        self._lock = threading.RLock()

    def spools(self) -> list[Spool]:
        if not self.root.is_dir():
            return []
        out = []
        for meta in sorted(self.root.glob("*.json")):
            spool = Spool.load(meta)
            if spool is not None:
                out.append(spool)
        return out

    def find(self, name: str, size: int, last_modified: int) -> Spool | None:
        return Spool.load(self.root / f"{spool_key(name, size, last_modified)}.json")

    def open(self, name: str, size: int, last_modified: int) -> Spool:
        """The spool for this file: the one a previous transfer left, else a new one with its
        space checked up front (so a full disk is said before any byte is sent)."""
        with self._lock:
            return self._open(name, size, last_modified)

    def _open(self, name: str, size: int, last_modified: int) -> Spool:
        found = self.find(name, size, last_modified)
        if found is not None:
            return found
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            free = self._free_space(self.root)
        except OSError as exc:
            raise PickError(
                f"cannot use the spool directory {self.root} on the kernel: {exc.strerror or exc}"
            ) from exc
        if size > free:
            raise PickError(
                f"not enough space on the kernel's disk for {name}: it needs {format_size(size)}, "
                f"{format_size(free)} free in {self.root}"
            )
        spool = Spool(self.root, name, size, last_modified)
        try:
            with open(spool.data_path, "wb") as f:
                f.truncate(size)  # sparse: no byte is written twice
            spool.save()
        except OSError as exc:
            spool.remove()
            raise PickError(_disk_problem(spool, exc)) from exc
        return spool

    def remove(self, spool: Spool, *, task_id: str | None = None) -> bool:
        """Remove a spool; with ``task_id``, only while its sidecar still names that task (the
        same file may have been picked again meanwhile, under the same name)."""
        with self._lock:
            if task_id is not None:
                current = Spool.load(spool.meta_path)
                if current is None or current.task_id != task_id:
                    return False
            spool.remove()
            return True

    def sweep(
        self, task_alive: Callable[[str], bool], *, now: float | None = None, max_age: float = PARTIAL_MAX_AGE
    ) -> list[str]:
        """Remove spools whose task is gone (done, cancelled, forgotten) and old partial ones."""
        now = time.time() if now is None else now
        removed = []
        for spool in self.spools():
            stale = (not task_alive(spool.task_id)) if spool.task_id else (now - spool.updated > max_age)
            if stale and self.remove(spool, task_id=spool.task_id):
                removed.append(spool.key)
        for tmp in self.root.glob("*.tmp") if self.root.is_dir() else ():
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > 3600:  # a sidecar write a crash interrupted
                    tmp.unlink()
        return removed


Reply = dict[str, Any]


class PickerCore:
    """The kernel's side of the slice protocol (see the module docstring), without widgets.

    :meth:`handle` takes one browser message and returns the answers to send back.
    ``submit(path, name)`` starts the upload and returns its task id; ``engine()`` gives the
    engine (for cleanup events and to tell live tasks from finished ones), or None.
    """

    def __init__(
        self,
        store: SpoolStore,
        submit: Callable[[Path, str], str],
        *,
        engine: Callable[[], Any] | None = None,
        slice_size: int = SLICE_SIZE,
        window: int = WINDOW,
    ) -> None:
        self.store = store
        self.submit = submit
        self._engine_getter = engine
        self.slice_size = slice_size
        self.window = window
        self.received = 0  # slice bytes this kernel received, over every transfer
        self.entries: dict[str, dict[str, Any]] = {}  # key -> what the widget shows
        self._transfers: dict[str, Spool] = {}  # the browser's transfer id -> spool
        self._by_task: dict[str, Spool] = {}
        self._lock = threading.Lock()
        self._engine: Any = None
        self._unsubscribe: Callable[[], None] | None = None
        for spool in store.spools():
            if spool.task_id is None:
                self._entry(spool, "incomplete", "pick the same file again to continue")

    # -- engine -----------------------------------------------------------------------
    def engine(self) -> Any:
        if self._engine is None and self._engine_getter is not None:
            engine = self._engine_getter()
            if engine is not None:
                self._engine = engine
                self._unsubscribe = engine.subscribe(self._on_event)
        return self._engine

    def _on_event(self, event: TaskEvent) -> None:
        """Engine thread: only files are touched here (the widget is left to its own thread)."""
        snap = event.snapshot
        if snap.state not in FINAL_STATES:
            return
        with self._lock:
            spool = self._by_task.pop(snap.id, None)
        if spool is None:  # a task a previous kernel submitted, resumed from the journal here
            spool = next((s for s in self.store.spools() if s.task_id == snap.id), None)
        if spool is not None:
            self.store.remove(spool, task_id=snap.id)

    def task_alive(self, task_id: str) -> bool:
        """Whether a task may still read its spool: running here, or unfinished in the journal."""
        engine = self.engine()
        if engine is None:
            return True
        try:
            return engine.get(task_id).state not in FINAL_STATES
        except KeyError:
            pass
        try:
            return any(u.id == task_id for u in engine.unfinished())
        except Exception:  # noqa: BLE001 - an unreadable journal must not delete data
            return True

    def close(self) -> None:
        if self._unsubscribe is not None:
            with contextlib.suppress(Exception):
                self._unsubscribe()
            self._unsubscribe = None

    # -- messages -----------------------------------------------------------------------
    def handle(self, content: dict[str, Any], buffers: list[Any] | None = None) -> list[Reply]:
        kind = content.get("kind")
        fid = str(content.get("file", ""))
        try:
            if kind == "begin":
                return self._begin(fid, content)
            if kind == "slice":
                return self._slice(fid, content, buffers or [])
            if kind == "fail":
                return self._fail(fid, str(content.get("message") or "the browser could not read the file"))
            if kind == "cancel":
                return self._cancel(str(content.get("key", "")))
            return []
        except PickError as exc:
            message = str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must still end in a message, not a hung transfer
            message = f"the kernel could not take this file ({type(exc).__name__}: {exc}); pick it again"
        spool = self._transfers.pop(fid, None)
        if spool is not None:
            self._entry(spool, "failed", message)
        return [{"kind": "stop", "file": fid, "message": message}]

    def _begin(self, fid: str, c: dict[str, Any]) -> list[Reply]:
        name = str(c.get("name") or "").replace("\\", "/").split("/")[-1]
        try:
            size, last_modified = int(c["size"]), int(c.get("last_modified") or 0)
        except (KeyError, TypeError, ValueError):
            raise PickError(f"{name or 'a file'}: the browser did not say how big it is") from None
        if not name or name in (".", "..") or size < 0:
            raise PickError(f"{name or 'a file without a name'} cannot be taken (no usable name or size)")
        if self._engine_getter is not None:
            self.store.sweep(self.task_alive)
        spool = self.store.open(name, size, last_modified)
        for other, sp in list(self._transfers.items()):
            if sp.key == spool.key:  # the same file from a reloaded page: this transfer wins
                del self._transfers[other]
        if spool.task_id is not None:
            return self._already_submitted(fid, spool)
        self._transfers[fid] = spool
        if spool.complete:
            return self._finish(fid, spool)
        self._entry(spool, "spooling", "")
        return [
            {
                "kind": "need",
                "file": fid,
                "key": spool.key,
                "ranges": spool.missing(),
                "slice": self.slice_size,
                "window": self.window,
                "spooled": spool.held,
            }
        ]

    def _already_submitted(self, fid: str, spool: Spool) -> list[Reply]:
        """Picked again after its upload started: resume that upload rather than start another."""
        task_id = spool.task_id
        assert task_id is not None
        engine = self.engine()
        note = f"already in the kernel; uploading as task {task_id}"
        if engine is not None:
            try:
                task = engine.get(task_id)
            except KeyError:
                task = None
            try:
                if task is None or task.state in (TaskState.PAUSED, TaskState.FAILED):
                    engine.resume(task_id)
                    note = f"already in the kernel; resumed task {task_id}"
            except Exception as exc:  # said in the widget
                raise PickError(
                    f"{spool.name} is in the kernel but task {task_id} could not resume: {exc}"
                ) from exc
            with self._lock:
                self._by_task[task_id] = spool
        self._entry(spool, "uploading", note, task=task_id)
        return [{"kind": "done", "file": fid, "key": spool.key, "task": task_id, "spooled": spool.held}]

    def _slice(self, fid: str, c: dict[str, Any], buffers: list[Any]) -> list[Reply]:
        spool = self._transfers.get(fid)
        if spool is None:
            return [
                {
                    "kind": "stop",
                    "file": fid,
                    "message": (
                        "this transfer is no longer open in the kernel: pick the file again to continue"
                    ),
                }
            ]
        if len(buffers) != 1:
            raise PickError(f"{spool.name}: a slice came without its bytes")
        data = buffers[0]
        offset = int(c.get("offset", -1))
        spool.write(offset, data)
        self.received += len(memoryview(data).cast("B"))
        self._entry(spool, "spooling", "")
        ack: Reply = {"kind": "ack", "file": fid, "key": spool.key, "offset": offset, "spooled": spool.held}
        if spool.ranges.covers(spool.size):
            return [ack, *self._finish(fid, spool)]
        return [ack]

    def _finish(self, fid: str, spool: Spool) -> list[Reply]:
        """Every byte is on the kernel's disk: hand the file to the engine."""
        self._transfers.pop(fid, None)
        self.engine()  # subscribe before the task exists, so its end is never missed
        try:
            task_id = str(self.submit(spool.data_path, spool.name))
        except Exception as exc:  # noqa: BLE001 - said in the widget; the spool stays for another try
            message = (
                f"{spool.name} is in the kernel but its upload did not start: {exc or type(exc).__name__}"
            )
            self._entry(spool, "failed", message + " (pick it again to retry; nothing is sent twice)")
            return [{"kind": "stop", "file": fid, "key": spool.key, "message": message}]
        spool.task_id = task_id
        with contextlib.suppress(OSError):
            spool.save()
        with self._lock:
            self._by_task[task_id] = spool
        engine = self._engine
        if engine is not None:  # it may have ended already (a 0-byte file, a refusal)
            with contextlib.suppress(KeyError):
                if engine.get(task_id).state in FINAL_STATES:
                    with self._lock:
                        self._by_task.pop(task_id, None)
                    self.store.remove(spool, task_id=task_id)
        self._entry(
            spool,
            "uploading",
            f"handed to the engine as task {task_id}: its row shows the upload to the server",
            task=task_id,
        )
        return [{"kind": "done", "file": fid, "key": spool.key, "task": task_id, "spooled": spool.held}]

    def _fail(self, fid: str, message: str) -> list[Reply]:
        spool = self._transfers.pop(fid, None)
        if spool is not None:
            self._entry(spool, "failed", message)
        return []

    def _cancel(self, key: str) -> list[Reply]:
        out: list[Reply] = []
        for fid, open_spool in list(self._transfers.items()):
            if open_spool.key == key:
                del self._transfers[fid]
                out.append({"kind": "stop", "file": fid, "key": key, "message": "cancelled"})
        entry = self.entries.get(key)
        spool = next((s for s in self.store.spools() if s.key == key), None)
        if spool is not None and spool.task_id is None:  # one handed to the engine is its task's
            self.store.remove(spool)
        if entry is not None:
            entry.update(state="cancelled", message="cancelled; the part sent to the kernel was removed")
        return out

    def note_tasks(self, snaps: Any) -> bool:
        """The kernel-to-server leg: each pick's task progress (``uploaded``, ``upload_state``)
        for the pick's second bar; whether any entry changed."""
        changed = False
        by_task = {e["task"]: e for e in self.entries.values() if e.get("task")}
        for snap in snaps:
            entry = by_task.get(snap.id)
            if entry is None:
                continue
            new = {"uploaded": int(snap.acked), "upload_state": snap.state.value}
            if any(entry.get(k) != v for k, v in new.items()):
                entry.update(new)
                changed = True
        return changed

    def _entry(self, spool: Spool, state: str, message: str, task: str | None = None) -> None:
        old = self.entries.get(spool.key) or {}
        self.entries[spool.key] = {
            "uploaded": old.get("uploaded", 0),
            "upload_state": old.get("upload_state", ""),
            "key": spool.key,
            "name": spool.name,
            "size": spool.size,
            "spooled": spool.held,
            "state": state,
            "message": message,
            "task": task or spool.task_id or "",
        }


class FilePicker(anywidget.AnyWidget):
    """A "Pick files" button and drop zone that streams files to the kernel (see the module
    docstring); ``submit(path, name)`` starts the upload of a whole spooled file."""

    _esm = _STATIC / "picker.js"
    _css = _STATIC / "picker.css"

    entries = traitlets.List(traitlets.Dict()).tag(sync=True)
    received = traitlets.Int(0).tag(sync=True)

    def __init__(
        self,
        submit: Callable[[Path, str], str],
        *,
        engine: Callable[[], Any] | None = None,
        store: SpoolStore | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("layout", ipywidgets.Layout(flex="1 1 auto", min_width="0"))
        super().__init__(**kwargs)
        if engine is None:
            from ..api import get_engine

            engine = get_engine
        self.core = PickerCore(store or SpoolStore(), submit, engine=engine)
        self._published = 0.0
        self._publish_lock = threading.Lock()  # comm handler and UI pump both publish
        self._publish(force=True)
        self.on_msg(self._on_msg)

    def _on_msg(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        if not isinstance(content, dict):
            return
        replies = self.core.handle(content, buffers)
        busy = any(r["kind"] == "ack" for r in replies) and len(replies) == 1
        self._publish(force=not busy)
        for reply in replies:
            self.send(reply)

    def _publish(self, force: bool = False) -> None:
        """Entries for every view (and a reloaded page); at most ~4 a second mid-transfer."""
        with self._publish_lock:
            now = time.monotonic()
            if not force and now - self._published < 0.25:
                return
            self._published = now
            with self.hold_sync():
                self.entries = [dict(e) for e in self.core.entries.values()]
                self.received = self.core.received

    def note_tasks(self, snaps: Any) -> None:
        """Task snapshots from the panel's UI pump (its thread): the picks' upload leg."""
        if self.core.note_tasks(snaps):
            self._publish(force=True)

    def close(self) -> None:
        self.core.close()
        super().close()
