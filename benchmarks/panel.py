"""Item 6: what the live panel costs a real kernel.

A real IPython kernel (ipykernel, started with jupyter_client, as Jupyter does) loads the
extension and runs ``%upload FILE URL`` against the reference server, which displays the
task's live row (ipywidgets, i.e. comms). The harness reads the kernel's IOPub channel
the whole time, as a frontend would, and counts ``comm_msg`` messages: every widget state
update the kernel sends. The window runs from the magic's reply to the server counting
the file complete.

Then four uploads run at once and the harness executes a trivial cell (``1 + 1``) over
and over, measuring execute_request → execute_reply; the same cell with no uploads
running is the baseline.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .files import make_dense, warm
from .servers import REPO_ROOT, Target, child_env, start_reference
from .stats import summarize

__all__ = ["KernelSession", "run_section"]

MiB = float(1 << 20)
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _completed(target: Target) -> int:
    with _OPENER.open(target.server.url + "/_nbupload/stats", timeout=10) as resp:
        return int(json.loads(resp.read())["uploader"]["completed"])


class KernelSession:
    """A kernel, a client, and a thread counting IOPub messages by type with timestamps."""

    def __init__(self, env: dict[str, str]) -> None:
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(
            kernel_name="python3", env=env, cwd=str(REPO_ROOT), startup_timeout=60
        )
        self.events: list[tuple[float, str]] = []  # (monotonic time, msg_type) of every IOPub message
        self.errors: list[str] = []
        self._marks: set[str] = set()
        self._seen_marks: dict[str, float] = {}
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read_iopub, name="iopub-reader", daemon=True)
        self._reader.start()

    def _read_iopub(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            except Exception:  # noqa: BLE001 - channels closed at shutdown
                return
            kind = msg["header"]["msg_type"]
            self.events.append((time.monotonic(), kind))
            if kind == "error":
                self.errors.append("\n".join(msg["content"].get("traceback", []))[-500:])
            elif kind == "stream" and msg["content"].get("name") == "stderr":
                self.errors.append(msg["content"].get("text", "")[-500:])
            elif kind == "stream" and msg["content"].get("text", "").strip() in self._marks:
                self._seen_marks[msg["content"]["text"].strip()] = time.monotonic()

    def run(self, code: str, timeout: float = 60.0) -> tuple[float, dict[str, Any]]:
        """Execute ``code``; seconds from request to reply, and the reply's content."""
        t0 = time.monotonic()
        msg_id = self.kc.execute(code, store_history=False)
        while True:
            reply = self.kc.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        elapsed = time.monotonic() - t0
        content = reply["content"]
        if content.get("status") != "ok":
            raise RuntimeError(f"cell failed: {content.get('ename')}: {content.get('evalue')}")
        return elapsed, content

    def eval(self, expr: str) -> str:
        """The ``text/plain`` value of ``expr`` in the kernel (a user expression: no cell output)."""
        msg_id = self.kc.execute("", store_history=False, user_expressions={"x": expr})
        while True:
            reply = self.kc.get_shell_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        x = reply["content"]["user_expressions"]["x"]
        if x.get("status") != "ok":
            raise RuntimeError(f"{expr}: {x.get('ename')}: {x.get('evalue')}")
        return str(x["data"]["text/plain"])

    def barrier(self, timeout: float = 60.0) -> float:
        """When every IOPub message the kernel sent before now has been read.

        The kernel sends IOPub messages on one socket, in order: once a marker printed now
        arrives, everything sent before it (widget updates included) has arrived too.
        """
        mark = f"nbupload-bench-barrier-{len(self._marks)}"
        self._marks.add(mark)
        self.run(f"print({mark!r})")
        end = time.monotonic() + timeout
        while mark not in self._seen_marks:
            if time.monotonic() > end:
                raise TimeoutError("IOPub marker not received")
            time.sleep(0.01)
        return self._seen_marks[mark]

    def count(self, kind: str, start: float, end: float) -> int:
        return sum(1 for t, k in list(self.events) if k == kind and start <= t <= end)

    def close(self) -> None:
        self._stop.set()
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=True)
        self._reader.join(2)


def _wait_completed(target: Target, goal: int, timeout: float) -> float:
    end = time.monotonic() + timeout
    while _completed(target) < goal:
        if time.monotonic() > end:
            raise TimeoutError(f"uploads not complete after {timeout:.0f} s")
        time.sleep(0.01)
    return time.monotonic()


def _wait_row_settled(session: KernelSession, timeout: float) -> float:
    """Wait until every task in the kernel is finished and its row shows it.

    The server counting a file complete says nothing about the kernel: the engine may
    not have read the last answer yet, and the pump applies it up to one interval later.
    Counting before then would miss the final update (and, on a fast link where the
    whole upload fits in one pump interval, every update).
    """
    settled = (
        "(lambda s: s.pump.pending == 0 and all("
        "t.state.value in ('done', 'failed', 'cancelled') for t in s.engine.tasks()))"
        "(__import__('nbupload.ipython.extension', fromlist=['x']).current_session(get_ipython()))"
    )
    end = time.monotonic() + timeout
    while session.eval(settled) != "True":
        if time.monotonic() > end:
            raise TimeoutError(f"rows not settled after {timeout:.0f} s")
        time.sleep(0.05)
    return session.barrier(timeout)


def run_section(*, targets: list[Target], workdir: Path, quick: bool, runs: int, preset: dict[str, Any],
                log: Callable[[str], None], **_: Any) -> dict[str, Any]:  # fmt: skip
    from nbupload.units import parse_size

    size = parse_size(str(preset["panel_size"]))
    ref = next((t for t in targets if t.name == "reference"), None)
    own = ref is None
    if ref is None:
        ref = start_reference(workdir / "panel-root")
    path = make_dense(workdir / "panel.bin", size)
    warm(path)
    home = workdir / "panel-home"
    home.mkdir(parents=True, exist_ok=True)
    session: KernelSession | None = None
    out: dict[str, Any] = {"size": size}
    try:
        ref.clear_root()
        session = KernelSession(child_env(NBUPLOAD_HOME=str(home)))
        session.run("%load_ext nbupload")
        baseline = [session.run("1 + 1")[0] for _ in range(20 if not quick else 5)]
        out["cell_idle"] = summarize(baseline).as_dict()  # type: ignore[union-attr]

        # one task: widget messages per second
        updates = (
            "__import__('nbupload.ipython.extension', fromlist=['x'])"
            ".current_session(get_ipython()).pump.applied_updates"
        )
        done0 = _completed(ref)
        u0 = int(session.eval(updates))
        t_reply = time.monotonic()
        session.run(f"%upload {path} {ref.upload_url} --protocol uploader --filename one.bin")
        t_start = time.monotonic()
        _wait_completed(ref, done0 + 1, 600)
        t_end = _wait_row_settled(session, 60)
        duration = t_end - t_start
        n = session.count("comm_msg", t_start, t_end)
        u1 = int(session.eval(updates))
        out.update(
            one_task={"comm_msgs": n, "seconds": duration, "magic_reply": t_start - t_reply,
                      "row_updates": u1 - u0,
                      "row_updates_per_second": (u1 - u0) / duration if duration > 0 else None,
                      "comm_msgs_total": session.count("comm_msg", t_reply, time.monotonic())},
            messages_per_second_per_task=n / duration if duration > 0 else None,
        )  # fmt: skip
        log(
            f"  panel: 1 task, {n} widget messages in {duration:.2f} s = {n / duration:.1f}/s "
            f"({u1 - u0} row updates applied by the pump)"
        )

        # four tasks: trivial cell round trip while they run
        ref.clear_root()
        done0 = _completed(ref)
        for i in range(4):
            session.run(f"%upload {path} {ref.upload_url} --protocol uploader --filename four-{i}.bin")
        t_start = time.monotonic()
        busy: list[float] = []
        while _completed(ref) < done0 + 4 and time.monotonic() - t_start < 600:
            busy.append(session.run("1 + 1")[0])
            time.sleep(0.05)
        t_end = _wait_completed(ref, done0 + 4, 600)
        n4 = session.count("comm_msg", t_start, t_end)
        out.update(
            cell=summarize(busy).as_dict() if busy else None,
            cell_samples=len(busy),
            four_tasks={"comm_msgs": n4, "seconds": t_end - t_start,
                        "per_second_per_task": n4 / (t_end - t_start) / 4 if t_end > t_start else None},
        )  # fmt: skip
        log(
            f"  panel: 4 tasks, {len(busy)} cells, median "
            f"{out['cell']['median'] * 1000 if busy else 0:.1f} ms"
        )
        out["kernel_errors"] = session.errors[-5:]
    finally:
        if session is not None:
            session.close()
        path.unlink(missing_ok=True)
        if own:
            ref.stop()
        else:
            ref.clear_root()
    out["markdown"] = _markdown(out)
    return out


def _ms(d: dict[str, float] | None) -> str:
    if not d:
        return "-"
    return f"{d['median'] * 1000:.1f} ms ({d['min'] * 1000:.1f}–{d['max'] * 1000:.1f}, n={d['n']:.0f})"


def _markdown(out: dict[str, Any]) -> list[str]:
    one = out.get("one_task") or {}
    four = out.get("four_tasks") or {}
    rate = out.get("messages_per_second_per_task")
    return [
        "A real ipykernel (jupyter_client), `%load_ext nbupload`, "
        f"`%upload` of a {out['size'] / MiB:.0f} MiB file "
        "to the reference server (uploader protocol); IOPub read throughout as a frontend would.",
        "",
        "| figure | measured |",
        "|---|--:|",
        f"| widget messages (`comm_msg`) / s, one task | {rate:.1f} "
        f"({one.get('comm_msgs')} in {one.get('seconds', 0):.2f} s) |"
        if rate is not None
        else "| widget messages / s, one task | - |",
        f"| widget messages / s / task, four tasks | {four['per_second_per_task']:.1f} |"
        if four.get("per_second_per_task") is not None
        else "| widget messages / s / task, four tasks | - |",
        f"| row updates applied by the pump / s, one task | {one['row_updates_per_second']:.1f} "
        f"({one.get('row_updates')}; each sends one `comm_msg` per widget whose value changed) |"
        if one.get("row_updates_per_second") is not None
        else "| row updates / s, one task | - |",
        f"| trivial cell round trip, idle kernel | {_ms(out.get('cell_idle'))} |",
        f"| trivial cell round trip, 4 uploads running | {_ms(out.get('cell'))} |",
    ]
