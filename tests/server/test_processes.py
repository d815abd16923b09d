"""Several server processes on one root: one truth about every session and object.

Real ``nbupload serve`` processes (separate interpreters, separate ports, one ``--root``),
chunks of each session spread over them, as a load balancer or ``--workers`` would.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from nbupload.protocols import wcs
from nbupload.protocols.multipart import BytesSource

from .conftest import AK, SK, data_of, query, read_answer, send_chunk, token, wait_for
from .test_cli import serve

CHUNK = 8 * 1024


def _credentials_file(tmp_path: Path) -> str:
    path = tmp_path / "creds"
    path.write_text(f"{AK}:{SK}\n")
    return str(path)


def test_two_processes_on_one_root_assemble_every_file(tmp_path):
    root = tmp_path / "root"
    sessions, chunks = 12, 48
    files = {f"f{i:02d}.bin": data_of(CHUNK * chunks - 100 * i, seed=i) for i in range(sessions)}
    with serve("--root", str(root)) as (url_a, _), serve("--root", str(root)) as (url_b, _):
        urls = [url_a + "/upload", url_b + "/upload"]

        def upload(name: str) -> list[int]:
            data = files[name]
            boundary = "----twoproc" + name
            statuses = []
            with httpx.Client(timeout=60) as client:
                starts = list(range(0, len(data), CHUNK))
                # chunk k goes to process k % 2, two at a time, out of order
                order = starts[1::2] + starts[::2]
                for i, start in enumerate(order):
                    r = send_chunk(
                        client,
                        urls[i % 2],
                        boundary,
                        data,
                        start,
                        min(start + CHUNK, len(data)),
                        filename=name,
                    )
                    statuses.append(r.status_code)
            return statuses

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(upload, files))
        assert all(s == 200 for statuses in results for s in statuses)
        for name, data in files.items():
            stored = root / name
            assert stored.is_file(), name
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
        # both processes now tell the same story about a session: the whole file held
        with httpx.Client(timeout=30) as client:
            for url in urls:
                answer = query(client, url, "----twoprocf00.bin")
                assert str(answer.ranges_for("file")) == f"0-{len(files['f00.bin'])}"
    assert not list((root / ".partial").glob("*/*.part"))  # each part file was moved, none left


def _append_request(port: int, position: int, tok: str, key: str, data: bytes) -> tuple[bytes, bytes]:
    """The head+form prefix and the closing of one append request (sent by hand)."""
    boundary = "----appendrace" + os.urandom(6).hex()
    pre = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="token"\r\n\r\n{tok}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="key"\r\n\r\n{key}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    post = f"\r\n--{boundary}--\r\n".encode()
    head = (
        f"POST /append/{position} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(pre) + len(data) + len(post)}\r\n\r\n"
    ).encode()
    return head + pre, post


def test_same_position_appends_from_two_processes_one_wins_one_gets_409(tmp_path):
    root = tmp_path / "root"
    creds = _credentials_file(tmp_path)
    tok = token("bkt")
    first, second = data_of(3 << 20, seed=1), data_of(1000, seed=2)
    with (
        serve("--root", str(root), "--credentials-file", creds) as (url_a, _),
        serve("--root", str(root), "--credentials-file", creds) as (url_b, _),
    ):
        port_a = int(url_a.rsplit(":", 1)[1])
        obj = root / "bkt" / "race.bin"
        with socket.create_connection(("127.0.0.1", port_a), timeout=60) as sock:
            prefix, closing = _append_request(port_a, 0, tok, "race.bin", first)
            sock.sendall(prefix + first[: 2 << 20])  # process A holds the object's lock, mid-append
            assert wait_for(lambda: obj.exists() and obj.stat().st_size > 0, timeout=60)
            with ThreadPoolExecutor(1) as pool:
                # process B appends at the same position meanwhile: it must wait for A's lock
                def other() -> wcs.AppendAnswer:
                    enc = wcs.prepare_append(tok, BytesSource(second), key="race.bin")
                    with httpx.Client(timeout=60) as client:
                        r = client.post(f"{url_b}/append/0", content=iter(enc), headers=enc.headers)
                    return wcs.process_append_answer(r.status_code, r.headers.items(), r.content)

                later = pool.submit(other)
                sock.sendall(first[2 << 20 :] + closing)
                status_a, headers_a, _ = read_answer(sock)
                answer_b = later.result(60)
        assert status_a == 200
        assert headers_a["x-wcs-next-append-position"] == str(len(first))
        assert answer_b.status == 409
        assert answer_b.next_position == len(first)  # the real position, after A's append
        assert obj.read_bytes() == first
        # and appends at the right position go on from either process
        with httpx.Client(timeout=60) as client:
            enc = wcs.prepare_append(tok, BytesSource(second), key="race.bin")
            r = client.post(f"{url_b}/append/{len(first)}", content=iter(enc), headers=enc.headers)
        assert r.status_code == 200
        assert obj.read_bytes() == first + second


def test_concurrent_same_position_appends_exactly_one_succeeds(tmp_path):
    root = tmp_path / "root"
    creds = _credentials_file(tmp_path)
    tok = token("bkt")
    with (
        serve("--root", str(root), "--credentials-file", creds) as (url_a, _),
        serve("--root", str(root), "--credentials-file", creds) as (url_b, _),
    ):
        for round_ in range(8):
            key = f"obj{round_}.bin"
            barrier = threading.Barrier(4)

            def go(i: int, key: str = key, barrier: threading.Barrier = barrier) -> tuple[int, str | None]:
                data = data_of(200_000 + i, seed=i)
                enc = wcs.prepare_append(tok, BytesSource(data), key=key)
                with httpx.Client(timeout=60) as client:
                    barrier.wait(30)
                    r = client.post(
                        f"{(url_a, url_b)[i % 2]}/append/0", content=iter(enc), headers=enc.headers
                    )
                return r.status_code, r.headers.get("x-wcs-next-append-position")

            with ThreadPoolExecutor(4) as pool:
                results = list(pool.map(go, range(4)))
            statuses = sorted(s for s, _ in results)
            assert statuses == [200, 409, 409, 409], results
            size = (root / "bkt" / key).stat().st_size
            assert all(pos == str(size) for _, pos in results)
            assert size in {200_000 + i for i in range(4)}
            meta = json.loads(next((root / ".wcs").glob("*.json")).read_text()) if round_ == 0 else None
            assert meta is None or meta["appendable"]


def test_query_answers_agree_between_processes_while_chunks_arrive(tmp_path):
    root = tmp_path / "root"
    data = data_of(CHUNK * 6)
    boundary = "----agree"
    with (
        serve("--root", str(root)) as (url_a, _),
        serve("--root", str(root)) as (url_b, _),
        httpx.Client(timeout=30) as client,
    ):
        for i, start in enumerate(range(0, CHUNK * 5, CHUNK)):
            r = send_chunk(client, (url_a, url_b)[i % 2] + "/upload", boundary, data, start, start + CHUNK)
            assert r.status_code == 200
            for url in (url_a, url_b):
                held = query(client, url + "/upload", boundary).ranges_for("file")
                assert str(held) == f"0-{start + CHUNK}"
