"""Signal dispositions set on purpose, never inherited from whoever started the test run.

A process started with SIGINT ignored (``cmd &`` in a script, ``nohup``-style launchers, some CI
runners) passes that on to its children, and Python then installs no KeyboardInterrupt handler:
a test that sends SIGINT and expects a KeyboardInterrupt must set the disposition itself, in the
process under test.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

__all__ = ["python_argv", "running_in", "sigint_raises_keyboard_interrupt"]

#: Runs in the child: set SIGINT's disposition, then exec the real command line, so the program
#: under test starts exactly as if its parent had that disposition.
_EXEC_WITH_SIGINT = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN if sys.argv[1] == 'ignore' else signal.SIG_DFL)\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
)


def python_argv(*args: str, sigint: str = "default") -> list[str]:
    """``[python, *args]`` started with SIGINT at its default (Python's KeyboardInterrupt
    handler) or, with ``sigint="ignore"``, ignored as in a background job."""
    if sigint not in ("default", "ignore"):
        raise ValueError(f"sigint must be 'default' or 'ignore', not {sigint!r}")
    return [sys.executable, "-c", _EXEC_WITH_SIGINT, sigint, *args]


@contextlib.contextmanager
def sigint_raises_keyboard_interrupt() -> Iterator[None]:
    """In this process (main thread), SIGINT raises KeyboardInterrupt for the duration."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def running_in(function_name: str, thread: threading.Thread | None = None) -> bool:
    """Whether ``thread`` (the main thread by default) is inside a function of that name now.

    A test that interrupts a blocking call from another thread waits for this first: a signal
    that lands before the call has entered the ``try`` that handles it (the thread was slow to
    get there on a loaded machine) would interrupt something else.
    """
    ident = (thread or threading.main_thread()).ident
    frame = sys._current_frames().get(ident) if ident is not None else None
    while frame is not None:
        if frame.f_code.co_name == function_name:
            return True
        frame = frame.f_back
    return False
