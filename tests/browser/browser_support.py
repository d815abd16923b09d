"""Helpers of the browser tests (a uniquely named module: every test dir has a conftest)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.support.helpers import wait_for

__all__ = ["ARTIFACTS", "KERNEL_DIAGNOSIS", "kernel_output", "wait_until", "write_notebook"]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout: float = 60.0, step: float = 0.1, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something true (and return that) or fail after ``timeout``.

    A Playwright timeout inside the predicate (an element being re-rendered, a locator that does
    not match for a moment on a busy machine) counts as "not yet", not as a failure.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    return wait_for(predicate, timeout, step, what=f"{what} in the browser", not_yet=(PlaywrightTimeout,))


def write_notebook(path: Path, cells: list[str], kernel: str | None = None) -> None:
    """A notebook of code cells, for the default kernel or the kernelspec named ``kernel``."""
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "metadata": {},
                "outputs": [],
                "source": src,
                "id": f"c{i}",
            }
            for i, src in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {
                "display_name": "Python 3" if kernel is None else kernel,
                "language": "python",
                "name": kernel or "python3",
            }
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))


_EXECUTE_JS = """async ([code, ms]) => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  if (!k) { return "(no kernel)"; }
  const out = [];
  const future = k.requestExecute({code: code, silent: false, store_history: false});
  future.onIOPub = (msg) => {
    const c = msg.content;
    if (msg.header.msg_type === "stream") { out.push(c.text); }
    if (msg.header.msg_type === "error") { out.push(c.ename + ": " + c.evalue + "\\n"); }
  };
  const timeout = new Promise((resolve) => setTimeout(() => resolve("timeout"), ms));
  const how = await Promise.race([future.done.then(() => "done"), timeout]);
  return out.join("") + (how === "timeout" ? "\\n(no answer in " + ms + " ms: kernel busy or stuck)" : "");
}"""


def kernel_output(page: Any, code: str, timeout_ms: int = 20_000) -> str:
    """Run ``code`` in the current notebook's kernel (not as a cell); what it printed."""
    return str(page.evaluate(_EXECUTE_JS, [code, timeout_ms]))


# What a failed test wants to know about the kernel: the engine's view of each task, what each
# row shows, the pump and event threads, and where nbupload's threads are.
KERNEL_DIAGNOSIS = """
import sys as _s, threading as _t, traceback as _tb
try:
    from nbupload.ipython.extension import _SESSIONS as _ss
except Exception as _e:
    _ss = {}; print("no nbupload sessions:", _e)
for _x in list(_ss.values()):
    _c = _x.panel_controller
    print("pump: pending", _c.pump.pending, "applied", _c.pump.applied_updates, "closed", _c.pump._closed)
    _en = _x._engine
    if _en is not None:
        _d = _en._dispatcher
        print("events: thread alive", bool(_d._thread and _d._thread.is_alive()), "queued", len(_d._ordered),
              "progress", len(_d._progress), "busy", _d._busy, "subscribers", len(_d._subs))
        for _k in _en.tasks():
            print("task", _k.id, _k.state.value, _k.snapshot().acked)
    for _i, _r in list(_c.rows.items()):
        print("row", _i, getattr(getattr(_r, "_snap", None), "state", "?"))
_f = _s._current_frames()
for _th in _t.enumerate():
    if _th.name.startswith("nbupload"):
        print("thread", _th.name, "alive", _th.is_alive())
        print("".join(_tb.format_stack(_f[_th.ident])) if _th.ident in _f else "  (no frame)")
"""
