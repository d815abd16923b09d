"""``nbupload serve --workers N``: N processes on one port, and a worker killed mid-chunk."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil

from nbupload.protocols import uploader
from nbupload.protocols.multipart import BytesSource
from tests.support import rawhttp

from .conftest import data_of, query, send_chunk, wait_for
from .test_cli import serve

CHUNK = 64 * 1024


def _workers(proc) -> list[psutil.Process]:
    """The serving processes under ``nbupload serve``'s supervisor (the supervisor's spawn
    helper, the resource tracker, has no listening role: it is told apart by its command)."""
    kids = psutil.Process(proc.pid).children()
    return [k for k in kids if "resource_tracker" not in " ".join(k.cmdline())]


def _pids_seen(url: str, tries: int = 200) -> set[int]:
    seen: set[int] = set()
    for _ in range(tries):
        with httpx.Client(timeout=30) as client:  # a fresh connection each time
            seen.add(client.get(url + "/_nbupload/stats").json()["pid"])
        if len(seen) >= 2:
            break
    return seen


def test_two_workers_serve_one_port_and_assemble_every_file(tmp_path):
    root = tmp_path / "root"
    with serve("--root", str(root), "--workers", "2") as (url, proc):
        assert wait_for(lambda: len(_workers(proc)) == 2, timeout=60)
        pids = {w.pid for w in _workers(proc)}
        assert _pids_seen(url) == pids  # both answer on the one port
        files = {f"w{i}.bin": data_of(CHUNK * 10 + i * 7, seed=i) for i in range(8)}

        def upload(name: str) -> None:
            data = files[name]
            for start in range(0, len(data), CHUNK):
                with httpx.Client(timeout=60) as client:  # new connection: either worker
                    r = send_chunk(
                        client,
                        url + "/upload",
                        "----wk" + name,
                        data,
                        start,
                        min(start + CHUNK, len(data)),
                        filename=name,
                    )
                    assert r.status_code == 200, r.text

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(upload, files))
        for name, data in files.items():
            assert hashlib.sha256((root / name).read_bytes()).digest() == hashlib.sha256(data).digest()


def _holder(workers: list[psutil.Process], local_port: int) -> psutil.Process:
    """The worker holding the connection from our ``local_port``."""
    for w in workers:
        for c in w.net_connections(kind="tcp"):
            if c.raddr and c.raddr.port == local_port:
                return w
    raise AssertionError("no worker holds the connection")


def test_sigkill_of_a_worker_mid_chunk_loses_nothing_and_the_upload_finishes(tmp_path):
    root = tmp_path / "root"
    big = 4 << 20
    data = data_of(CHUNK * 4 + big, seed=5)
    boundary = "----killmid"
    with serve("--root", str(root), "--workers", "2") as (url, proc):
        assert wait_for(lambda: len(_workers(proc)) == 2, timeout=60)
        with httpx.Client(timeout=60) as client:
            for start in range(0, CHUNK * 4, CHUNK):  # half the file acknowledged
                assert (
                    send_chunk(client, url + "/upload", boundary, data, start, start + CHUNK).status_code
                    == 200
                )
        # a chunk half sent by hand on its own connection; its worker is then killed
        # (the same filename as the session's acknowledged chunks: a changed one is refused at once)
        enc = uploader.prepare_chunk(boundary, BytesSource(data), CHUNK * 4, len(data), filename="data.bin")
        body = b"".join(bytes(p) for p in enc)
        host, port = url.rsplit("//", 1)[1].split(":")
        head = "".join(f"{k}: {v}\r\n" for k, v in enc.headers.items())
        request = f"POST /upload HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode()
        sock = socket.create_connection((host, int(port)), timeout=60)
        try:
            sock.sendall(request + body[: 3 << 20])
            part = next((root / ".partial").glob("*/*.part"))
            landing = wait_for(lambda: part.stat().st_size > CHUNK * 4, timeout=90)  # its bytes are landing
            if not landing:  # refused early? its answer says why
                sock.settimeout(10)
                answer = rawhttp.read_answer(sock)
                raise AssertionError(f"no bytes of the chunk landed; the server answered {answer}")
            victim = _holder(_workers(proc), sock.getsockname()[1])
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(30)
        finally:
            sock.close()
        # the kill left no lock and no half-written metadata: either process goes on
        with httpx.Client(timeout=60) as client:
            held = query(client, url + "/upload", boundary).ranges_for("file")
            assert str(held) == f"0-{CHUNK * 4}"  # what was acknowledged, and not the killed chunk
            for start in range(CHUNK * 4, len(data), 1 << 20):
                r = send_chunk(
                    client, url + "/upload", boundary, data, start, min(start + (1 << 20), len(data))
                )
                assert r.status_code == 200, r.text
            assert r.json()["complete"] is True
        assert (root / "data.bin").read_bytes() == data
        # the supervisor replaced the killed worker
        assert wait_for(
            lambda: len(_workers(proc)) == 2 and victim.pid not in {w.pid for w in _workers(proc)}, timeout=60
        )
