"""A chunk holding a whole file of a new session (the small files of a batch): the server's
shorter path, and how it is reconciled with another request of the same session that
arrives while its body is still coming."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import httpx

from nbupload.protocols import uploader
from nbupload.protocols.multipart import BytesSource, new_boundary
from nbupload.protocols.ranges import RangeSet
from nbupload.server.sessions import PARTIAL_DIR, FileEntry, Session, SessionStore
from tests.support import rawhttp

from .conftest import answer, data_of, query, send_chunk, wait_for
from .test_cli import serve


def _temp_files(server) -> list[str]:
    partial = server.root / ".partial"
    return sorted(p.name for p in partial.glob("*.tmp")) if partial.is_dir() else []


def _session_files(server) -> list[str]:
    """The names inside every session directory under ``.partial``."""
    partial = server.root / ".partial"
    return sorted(p.name for d in partial.iterdir() if d.is_dir() for p in d.iterdir())


class _HeldOpen:
    """A whole-file chunk whose body is sent all but its last bytes, finished on demand."""

    def __init__(self, server, boundary: str, data: bytes, filename: str) -> None:
        enc = uploader.prepare_chunk(boundary, BytesSource(data), 0, len(data), filename=filename)
        body = enc.read_all()
        head = (
            f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: {enc.content_type}\r\n"
            f"Content-Length: {enc.content_length}\r\nConnection: close\r\n\r\n"
        ).encode()
        self.rest = body[-100:]
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        self.sock.sendall(head + body[:-100])

    def finish(self) -> rawhttp.RawResponse:
        try:
            self.sock.sendall(self.rest)
            got = rawhttp.read_answer(self.sock)
            assert got is not None
            return got
        finally:
            self.sock.close()


def test_whole_chunk_of_a_new_session_is_stored_and_recorded(server, client):
    data = data_of(5000, 11)
    boundary = new_boundary()
    r = send_chunk(client, server.upload_url, boundary, data, 0, len(data), filename="run1/m.csv")
    body = answer(r)
    assert r.status_code == 200 and body["result"] == "OK", r.text
    assert body["complete"] is True and body["range"] == "0-5000" and body["stored"] == "run1/m.csv"
    assert (server.root / "run1" / "m.csv").read_bytes() == data
    # the session is on disk, whole: a client that lost the answer learns it from the query
    assert query(client, server.upload_url, boundary).ranges_for("file") == RangeSet([(0, len(data))])
    assert _temp_files(server) == []
    # created whole without its lock: the lock file is made by the first request needing it
    assert _session_files(server) == ["session.json"]
    assert [p.name for p in (server.root / ".partial").iterdir() if p.name.startswith("new-")] == []
    # the same chunk again (a retry) is accepted and changes nothing
    r = send_chunk(client, server.upload_url, boundary, data, 0, len(data), filename="run1/m.csv")
    assert answer(r)["complete"] is True
    assert (server.root / "run1" / "m.csv").read_bytes() == data


def test_whole_chunk_completes_a_partial_field_that_arrived_meanwhile(server, client):
    data = data_of(300_000, 12)
    boundary = new_boundary()
    held = _HeldOpen(server, boundary, data, "late.bin")
    assert wait_for(lambda: len(_temp_files(server)) == 1)  # the whole chunk's body is arriving
    r = send_chunk(client, server.upload_url, boundary, data, 0, 1000, filename="late.bin")
    assert answer(r)["complete"] is False
    assert not (server.root / "late.bin").exists()
    got = held.finish()
    assert got.status == 200 and b'"complete":true' in got.body, got.body
    assert (server.root / "late.bin").read_bytes() == data
    assert query(client, server.upload_url, boundary).ranges_for("file") == RangeSet([(0, len(data))])
    assert _temp_files(server) == []
    assert _session_files(server) == ["lock", "session.json"]  # the partial file went too


def test_whole_chunk_finding_its_file_complete_drops_its_copy(server, client):
    data = data_of(200_000, 13)
    boundary = new_boundary()
    held = _HeldOpen(server, boundary, data, "twice.bin")
    assert wait_for(lambda: len(_temp_files(server)) == 1)
    before = server.stats()["uploader"]["duplicate_bytes"]
    r = send_chunk(client, server.upload_url, boundary, data, 0, len(data), filename="twice.bin")
    assert answer(r)["complete"] is True  # completed first: the held copy finds it done
    got = held.finish()
    assert got.status == 200 and b'"complete":true' in got.body, got.body
    assert (server.root / "twice.bin").read_bytes() == data
    assert server.stats()["uploader"]["duplicate_bytes"] == before + len(data)
    assert _temp_files(server) == []


def test_whole_chunk_contradicting_the_session_is_refused(server, client):
    data = data_of(10_000, 14)
    boundary = new_boundary()
    held = _HeldOpen(server, boundary, data, "size.bin")
    assert wait_for(lambda: len(_temp_files(server)) == 1)
    other = data_of(20_000, 14)
    assert (
        send_chunk(client, server.upload_url, boundary, other, 0, 100, filename="size.bin").status_code == 200
    )
    got = held.finish()
    assert got.status == 400 and b"10000" in got.body and b"20000" in got.body, got.body
    assert not (server.root / "size.bin").exists()
    assert query(client, server.upload_url, boundary).ranges_for("file") == RangeSet([(0, 100)])
    assert _temp_files(server) == []


def test_whole_chunk_keeps_the_data_fields_sent_with_it(server, client):
    data = data_of(700, 15)
    boundary = new_boundary()
    r = send_chunk(
        client, server.upload_url, boundary, data, 0, len(data), filename="f.csv", fields={"run": "7"}
    )
    assert answer(r)["complete"] is True
    got = query(client, server.upload_url, boundary)
    assert got.ranges_for("file") == RangeSet([(0, len(data))]) and "run" in got.data
    # a chunk of another field of the same session now goes the locked way and keeps both
    r = send_chunk(client, server.upload_url, boundary, data, 0, len(data), name="other", filename="g.csv")
    assert answer(r)["complete"] is True
    got = query(client, server.upload_url, boundary)
    assert got.ranges_for("file") == got.ranges_for("other") == RangeSet([(0, len(data))])
    assert _session_files(server) == ["lock", "session.json"]


def test_whole_chunks_of_one_new_session_racing_in_two_processes_all_agree(tmp_path):
    """The same whole chunk (a retry racing its first attempt) and the session's other fields,
    sent at once to two worker processes: each creates the session or, finding it created,
    records its field under the lock; nothing is lost, nothing left behind."""
    root = tmp_path / "root"
    boundary = new_boundary()
    fields = {f"f{i}": data_of(3000 + i, 20 + i) for i in range(6)}

    def send(job: tuple[str, str, int]) -> dict:
        b, name, round_ = job
        data = fields[name]
        with httpx.Client(timeout=60) as c:  # a new connection: either worker
            r = send_chunk(c, url + "/upload", b, data, 0, len(data), name=name, filename=f"r{round_}/{name}")
        assert r.status_code == 200, r.text
        return answer(r)

    with serve("--root", str(root), "--workers", "2") as (url, _proc):
        for round_ in range(3):
            b = f"{boundary}{round_}"
            jobs = [(b, name, round_) for name in fields for _copy in range(2)]
            with ThreadPoolExecutor(len(jobs)) as pool:
                answers = list(pool.map(send, jobs))
            assert all(a["complete"] is True for a in answers)
            with httpx.Client(timeout=60) as c:
                got = query(c, url + "/upload", b)
            for name, data in fields.items():
                assert got.ranges_for(name) == RangeSet([(0, len(data))]), (round_, name)
                assert (root / f"r{round_}" / name).read_bytes() == data
    partial = root / ".partial"
    assert sorted(p.name for p in partial.iterdir() if not p.is_dir() or p.name.startswith("new-")) == []


def test_a_staged_session_is_published_only_where_none_exists(tmp_path):
    store = SessionStore(tmp_path)
    boundary = new_boundary()
    first = Session(boundary=boundary, directory=store.session_dir(boundary))
    first.files["a"] = FileEntry("a", "a.bin", 3, RangeSet([(0, 3)]), complete=True, stored="a.bin")
    staged = store.stage(first)
    assert store.get(boundary) is None  # staged, not visible
    assert store.publish(staged, boundary) is True
    assert store.get(boundary).files["a"].complete is True
    # the session exists now: a second staging of it is refused and can be discarded
    second = Session(boundary=boundary, directory=store.session_dir(boundary))
    staged = store.stage(second)
    assert store.publish(staged, boundary) is False
    store.discard(staged)
    assert store.get(boundary).files.keys() == {"a"}
    assert sorted(p.name for p in (tmp_path / PARTIAL_DIR).iterdir()) == [store.session_dir(boundary).name]
