"""The batch benchmark as an A/B comparison of code trees, the trials interleaved.

On a shared machine the load changes between sittings by more than most changes gain, so
two versions are compared in one sitting: each tree (a checkout or worktree of this
repository) gets its own reference server started from its own code, and the trials
alternate (A, B, B, A, A, B, ...) so the load hits both alike. Each trial is
``python -m benchmarks.batch --child`` run from its tree (a fresh process playing the
kernel, as in :mod:`benchmarks.batch`); besides files/s it prints the CPU time each file
cost the server and the client process (``user + system``, per file done).

``python -m benchmarks.batch_ab --files 2000 --rounds 4 /work/main .``
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .batch import make_tree, run_batch_child
from .servers import empty_dir

__all__ = ["main"]

_URL = re.compile(r"serving on (http://\S+)")


class _Server:
    """``nbupload serve`` started from ``tree``'s code on an ephemeral port, root ``root``."""

    def __init__(self, tree: Path, root: Path) -> None:
        self.tree = tree
        self.root = root
        root.mkdir(parents=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nbupload", "serve", "--port", "0", "--root", str(root)],
            cwd=tree,
            env=_env(tree),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        found: list[str] = []
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:  # drained to the end: the server never blocks on it
                m = _URL.search(line)
                if m and not found:
                    found.append(m.group(1).rstrip("/"))
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(60) or not found:
            self.stop()
            raise RuntimeError(f"the server of {tree} did not start")
        self.url = found[0] + "/upload"

    def cpu(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _env(tree: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(name, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def _trial(server: _Server, folder: Path, work: Path) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    cpu0 = server.cpu()
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = run_batch_child(
        folder,
        server.url,
        home,
        cwd=server.tree,
        env=_env(server.tree, NBUPLOAD_HOME=str(home)),
        label=f"trial in {server.tree}",
    )
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = max(1, res["done"])
    res["server_ms"] = (server.cpu() - cpu0) / done * 1000
    client = kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime
    res["client_ms"] = client / done * 1000
    empty_dir(server.root)  # nothing to skip next time
    shutil.rmtree(home, ignore_errors=True)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.batch_ab", description=__doc__)
    p.add_argument("trees", nargs=2, type=Path, help="two checkouts of this repository: A and B")
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args(argv)
    trees = [t.resolve() for t in args.trees]
    work = Path(tempfile.mkdtemp(prefix="nbupload-batch-ab-"))
    folder = make_tree(work / "files", args.files, args.size)
    servers: list[_Server] = []
    rates: dict[int, list[float]] = {0: [], 1: []}
    try:
        for i, tree in enumerate(trees):
            servers.append(_Server(tree, work / f"root-{i}"))
        for r in range(args.rounds):
            for i in (0, 1) if r % 2 == 0 else (1, 0):
                res = _trial(servers[i], folder, work)
                rates[i].append(res["files_per_s"])
                print(
                    f"round {r} {'AB'[i]} ({trees[i]}): {res['files_per_s']:.0f} files/s, "
                    f"{res['done']}/{res['files']} done, RSS +{res['rss_growth'] / (1 << 20):.1f} MiB, "
                    f"CPU per file: server {res['server_ms']:.2f} ms, client {res['client_ms']:.2f} ms, "
                    f"load {os.getloadavg()[0]:.1f}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    for i, tree in enumerate(trees):
        runs = ", ".join(f"{x:.0f}" for x in rates[i])
        print(f"{'AB'[i]} {tree}: median {statistics.median(rates[i]):.0f} files/s ({runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
