"""A batch run by another process, held mid-upload: for the tests of what this process sees of
it (``nbupload ls``, ``%upload list``, the panel's offers) while it runs and once it is killed.

The child runs ``upload_many(folder, url)`` through a :class:`~tests.support.proxy.FaultProxy`
whose connections forward one byte and then nothing until they close: a pause point that keeps
the batch running whatever the machine's speed, without a sleep. ``proxy.default = Fault()``
lets new connections through (a resume in this process finishes the batch).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .helpers import wait_for
from .proxy import Fault, FaultProxy

__all__ = ["HOLD", "HeldBatch", "held_batch"]

ROOT = Path(__file__).resolve().parents[2]

#: Every connection forwards its first byte, then nothing until it closes.
HOLD = Fault(stall_after=1, stall_for=3600)

_CHILD = textwrap.dedent(
    """
    import sys
    from nbupload.batch import upload_many
    from nbupload.engine import Engine, EngineConfig
    folder, url, journal = sys.argv[1:4]
    engine = Engine(EngineConfig(**({"journal_dir": journal} if journal else {})))
    batch = upload_many(folder, url, engine=engine)
    print("STARTED", batch.id, flush=True)
    sys.stdin.read()  # until the test kills it
    """
)


@dataclass
class HeldBatch:
    id: str
    url: str
    proxy: FaultProxy
    child: subprocess.Popen[str]

    def kill(self) -> None:
        """SIGKILL the child (no clean-up of any kind runs) and reap it."""
        if self.child.poll() is None:
            os.kill(self.child.pid, signal.SIGKILL)
        self.child.wait(30)


@contextmanager
def held_batch(
    folder: Path, server_port: int, path: str, journal: Path | None = None, *, script: str = _CHILD
) -> Iterator[HeldBatch]:
    """A child process running a batch of ``folder`` to ``http://127.0.0.1:server_port{path}``
    through a holding proxy; ``journal``: its journal dir (default: ``$NBUPLOAD_HOME``'s).
    ``script``: the child's program (``sys.argv[1:4]``: folder, URL, journal; it prints
    ``STARTED ID`` once the batch exists, then does what the test writes to its stdin).
    Yields once the batch exists and its first request is held; kills the child at the end."""
    with FaultProxy("127.0.0.1", server_port, default=HOLD) as proxy:
        url = proxy.url + urlsplit(path).path
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(folder), url, str(journal or "")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        held = None
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line.startswith("STARTED"), line
            held = HeldBatch(line.split()[1], url, proxy, child)
            wait_for(lambda: proxy.counters.stalls >= 1, timeout=60, what="the batch's first request")
            yield held
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
            child.wait(30)
            for stream in (child.stdout, child.stdin):
                if stream is not None:
                    stream.close()
