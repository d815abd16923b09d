"""Clicks on a row's buttons go to the subshell the frontend chose, so they act while a cell runs.

Why this exists
---------------
JupyterLab 4.4+ sends widget comm messages to a kernel *subshell* when the kernel advertises
``"kernel subshells"`` in ``kernel_info`` (ipykernel 7 does): setting ``commsOverSubshells`` of
``@jupyterlab/apputils-extension:kernels-settings``, default ``perCommTarget`` (one subshell for
all widget comms). ipykernel runs each subshell on its own thread, so a click could be handled
during ``time.sleep(15)`` in a cell.

But ipykernel (7.4, the version tested) does not always honour the frontend's choice. Its
shell channel thread asks the comm where to deliver a ``comm_msg``
(``BaseComm._reply_subshell_for``), and the comm answers
with the subshell of the *last message it published*, whatever the frontend asked for: replies
to a comm go back to the loop that sent it (so an async cell awaiting a widget reply gets it).
A button's comm is opened by the cell that displays its row, on the main shell, so every click
was re-routed to the main shell and waited there for the running cell to end (measured in
JupyterLab 4.6.6 + ipykernel 7.4: Lab sent the click with a ``subshell_id``; the shell channel
thread routed it to ``None``; ``task_action`` ran on ``MainThread`` 14 s later).

A row's buttons only send click events (no request awaiting a reply, no state another message
must precede), so their comms route each message where the frontend sent it: to Lab's subshell
when it uses one, to the main shell otherwise (ipykernel 6, ``commsOverSubshells: disabled``,
other frontends), exactly as before. The click handler then runs on the subshell's thread; the
controller's lock and the engine's thread-safe task methods make that safe.
"""

from __future__ import annotations

from typing import Any

__all__ = ["route_to_frontend_subshell"]


def _frontend_choice(_data: Any, frontend_subshell_id: str | None) -> str | None:
    return frontend_subshell_id


def route_to_frontend_subshell(widget: Any) -> bool:
    """Deliver ``widget``'s frontend messages to the subshell the frontend addressed.

    Only for widgets whose messages need no ordering with other widgets' (buttons). Returns
    whether the kernel's comm has the routing hook (ipykernel 7.4 does); without it the kernel
    already delivers to the subshell addressed (or has none), and nothing is needed.
    """
    comm = getattr(widget, "comm", None)
    if comm is None or not hasattr(type(comm), "_reply_subshell_for"):
        return False
    comm._reply_subshell_for = _frontend_choice
    return True
