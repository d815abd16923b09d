"""A batch's liveness across processes: ``nbupload ls`` in one process says whether another
process runs a batch, even one whose files are all one chunk (they have no task entry of their
own to lock: the batch's own lock says it), and a SIGKILL never leaves it "running"."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from nbupload.server import start_server
from tests.support.batchproc import HOLD  # the pause point: connections held after one byte
from tests.support.cliproc import sigkill_when
from tests.support.helpers import make_file, sha256_file, wait_for
from tests.support.proxy import Fault, FaultProxy


def _batch_rows(cli) -> list[dict]:
    r = cli("ls", "--json")
    assert r.returncode == 0, r.stderr
    return [row for row in json.loads(r.stdout) if row["kind"] == "batch"]


def test_a_batch_of_one_chunk_files_is_running_while_its_process_lives_and_stopped_once_killed(
    cli, tmp_path, home
):
    res = tmp_path / "res"
    names = [f"d{i % 2}/f{i}.txt" for i in range(6)]
    for i, name in enumerate(names):
        (res / name).parent.mkdir(parents=True, exist_ok=True)
        make_file(res / name, 1000 + 100 * i, seed=i)  # one chunk each: no task entry of their own
    total = sum(1000 + 100 * i for i in range(6))
    batches = Path(home) / "tasks" / "batches"
    with (
        start_server(root=tmp_path / "root", throttle=32 << 10) as srv,
        FaultProxy("127.0.0.1", srv.port, default=HOLD) as proxy,
    ):
        url = proxy.url + urlsplit(srv.upload_url).path
        proc = cli.popen("put", str(res), url, "--quiet")
        # the batch is journaled and its first requests are held at the proxy
        wait_for(lambda: any(batches.glob("*.batch.json")) and proxy.counters.stalls >= 1, timeout=60)
        (running,) = _batch_rows(cli)
        assert running["state"] == "running" and running["locked"] is True, running
        assert running["files_total"] == 6 and running["files_done"] == 0, running
        assert running["tasks"] == [] and running["bytes_total"] == total, running  # no task entry
        line = next(x for x in cli("ls").stdout.splitlines() if x.startswith(running["id"]))
        assert " running " in line and "batch of 6 files (0/6 done)" in line, line
        # another process neither resumes nor forgets it while it runs
        r = cli("resume", running["id"], "--quiet")
        assert r.returncode == 1 and "another process" in r.stderr and "Traceback" not in r.stderr, r.stderr
        r = cli("rm", running["id"])
        assert r.returncode == 1 and "another process" in r.stderr and "Traceback" not in r.stderr, r.stderr

        sigkill_when(proc, lambda: True)
        (stopped,) = _batch_rows(cli)
        assert stopped["id"] == running["id"], stopped
        assert stopped["state"] == "stopped" and stopped["locked"] is False, stopped
        assert stopped["files_total"] == 6 and stopped["bytes_total"] == total, stopped

        proxy.default = Fault()  # new connections go through: the batch resumes as one
        r = cli("resume", stopped["id"], "--quiet", timeout=300)
        assert r.returncode == 0 and "6/6 files" in r.stderr, r.stderr
        for name in names:
            assert sha256_file(srv.root / name) == sha256_file(res / name), name
        assert _batch_rows(cli) == []  # done: its record (and lock file) went
        assert not list(batches.glob(f"{running['id']}.*")), list(batches.iterdir())
