"""The driver state in the journal (:class:`~nbupload.engine.driverstate.DriverState`): entries
written before it existed (``"extra": {"mode": ..., "position": ...}``, labels beside them) load
and resume against the real reference server, and unknown keys survive a round trip."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from nbupload.engine import TaskState
from nbupload.engine.driverstate import DriverState, join_extra, split_extra
from nbupload.engine.journal import JournalRecord
from nbupload.protocols import uploader, wcs
from nbupload.protocols.multipart import FileSource
from tests.support.helpers import CREDENTIALS, make_file, sha256_file

AK, SK = next(iter(CREDENTIALS.items()))
CHUNK = 64 << 10
#: the ``extra`` object as the journal has written it since 0.1 (a dict of the drivers' keys)
OLD_EXTRA = {
    "mode": "resumable",
    "label.notebook": "work/analysis.ipynb",
    "label.server": "embedded",
    "from_a_newer_version": 7,
}


def _source(path: os.PathLike[str]) -> dict[str, object]:
    st = os.stat(path)
    return {
        "path": os.fspath(path),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "inode": st.st_ino,
        "dev": st.st_dev,
    }


def _old_entry(task_id: str, path: os.PathLike[str], url: str, **changes: object) -> dict[str, object]:
    """A journal entry in the format the engine wrote before DriverState (every key spelled out)."""
    size = os.stat(path).st_size
    entry: dict[str, object] = {
        "version": 1,
        "id": task_id,
        "name": os.path.basename(path),
        "protocol": "uploader",
        "url": url,
        "filename": os.path.basename(path),
        "field_name": "file",
        "fields": {},
        "headers": {},
        "secret_names": {"fields": [], "headers": [], "url": []},
        "key": None,
        "mime": None,
        "chunk_size": CHUNK,
        "boundary": "----nbupload" + "ab" * 16,
        "total": size,
        "acked": 0,
        "ranges": "",
        "source": _source(path),
        "extra": dict(OLD_EXTRA),
        "state": "uploading",
        "updated_at": 1.0,
    }
    entry.update(changes)
    return entry


def _write(journal_dir: os.PathLike[str], entry: dict[str, object]) -> None:
    os.makedirs(journal_dir, exist_ok=True)
    with open(os.path.join(journal_dir, f"{entry['id']}.json"), "w", encoding="utf-8") as f:
        json.dump(entry, f)


# ------------------------------------------------------------------------------ the format
def test_an_old_extra_object_reads_into_the_typed_state_and_writes_back_the_same():
    state, labels = split_extra({**OLD_EXTRA, "plain_reason": "x", "position": 5, "append_size": 4096})
    assert state == DriverState(
        mode="resumable",
        plain_reason="x",
        position=5,
        append_size=4096,
        other={"from_a_newer_version": 7},
    )
    assert labels == {"notebook": "work/analysis.ipynb", "server": "embedded"}
    assert join_extra(state, labels) == {**OLD_EXTRA, "plain_reason": "x", "position": 5, "append_size": 4096}
    assert DriverState().to_json() == {}  # nothing set, nothing written (as the old empty dict)


def test_a_whole_old_entry_round_trips_through_the_record(tmp_path):
    src = make_file(tmp_path / "f.bin", 1000)
    entry = _old_entry("abc123", src, "http://127.0.0.1:9/upload")
    rec = JournalRecord.from_json(entry)
    assert rec.driver.resumable and rec.labels["notebook"] == "work/analysis.ipynb"
    assert rec.to_json()["extra"] == OLD_EXTRA


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"position": "twelve"}, ValueError),
        ({"position": [1]}, TypeError),
        ({"position": -4}, ValueError),
        ({"append_size": 1.5}, TypeError),
        (["mode", "plain"], TypeError),
    ],
)
def test_a_driver_state_it_never_could_hold_refuses_the_entry(tmp_path, extra, error):
    entry = _old_entry("bad1", make_file(tmp_path / "f.bin", 10), "http://127.0.0.1:9/upload", extra=extra)
    with pytest.raises(error):
        JournalRecord.from_json(entry)


def test_an_unknown_mode_is_asked_again_and_unknown_values_that_are_not_scalars_are_dropped():
    state, labels = split_extra({"mode": "warp", "nested": {"a": 1}, "label.x": 3})
    assert state == DriverState() and labels == {"x": "3"}
    with pytest.raises(ValueError, match="resumable"):
        DriverState(mode="warp")


# ------------------------------------------------------------------ resumed over loopback
def test_an_old_uploader_entry_resumes_from_what_the_server_holds(server, make_engine, tmp_path, journal_dir):
    src = make_file(tmp_path / "old.bin", 10 * CHUNK + 123)
    size = src.stat().st_size
    entry = _old_entry("0ld0uploader", src, server.upload_url)
    boundary = str(entry["boundary"])
    # The earlier process sent the first 4 chunks before it died.
    fd = os.open(src, os.O_RDONLY)
    try:
        source = FileSource(fd)
        for start in range(0, 4 * CHUNK, CHUNK):
            body = uploader.prepare_chunk(boundary, source, start, start + CHUNK, filename="old.bin")
            reply = httpx.post(server.upload_url, headers=body.headers, content=body.read_all(), timeout=30)
            assert reply.status_code == 200, reply.text
    finally:
        os.close(fd)
    _write(journal_dir, entry)

    engine = make_engine(chunk_size=CHUNK)
    [unfinished] = engine.unfinished()
    assert unfinished.id == "0ld0uploader" and unfinished.labels == {
        "notebook": "work/analysis.ipynb",
        "server": "embedded",
    }
    [task] = engine.resume("0ld0uploader")
    assert task.driver_state.resumable and task.labels["server"] == "embedded"
    snap = task.wait(60, raise_on_error=True)
    assert snap.state is TaskState.DONE and snap.result["mode"] == "resumable"
    assert sha256_file(server.root / "old.bin") == sha256_file(src)
    stats = server.stats()["uploader"]
    assert stats["bytes"] == size and stats["duplicate_bytes"] == 0  # only the missing chunks went again
    assert not (journal_dir / "0ld0uploader.json").exists()


def test_an_old_wcs_entry_resumes_at_its_journaled_position(server, make_engine, tmp_path, journal_dir):
    src = make_file(tmp_path / "w.bin", 6 * CHUNK + 77, seed=3)
    data = src.read_bytes()
    position = 2 * CHUNK
    # The earlier process appended the first two chunks to the object before it died.
    head = tmp_path / "head.bin"
    head.write_bytes(data[:position])
    first = make_engine(chunk_size=CHUNK)
    first.submit(
        head, server.url, protocol="wcs-append", access_key=AK, secret_key=SK, scope="bkt:w.bin"
    ).wait(60, raise_on_error=True)
    entry = _old_entry(
        "0ld0wcs",
        src,
        server.url,
        protocol="wcs-append",
        key=None,
        wcs={"scope": "bkt:w.bin", "access_key": AK},
        acked=position,
        ranges=f"0-{position}",
        extra={"position": position, "append_size": CHUNK, "label.notebook": "n.ipynb"},
    )
    _write(journal_dir, entry)

    second = make_engine(chunk_size=CHUNK)
    [task] = second.resume("0ld0wcs", access_key=AK, secret_key=SK)
    assert task.driver_state.position == position and task.acked == position  # known before any request
    snap = task.wait(60, raise_on_error=True)
    assert snap.state is TaskState.DONE and snap.result["verified"]
    assert snap.result["hash"] == wcs.etag_of(data)
    assert (server.root / "bkt" / "w.bin").read_bytes() == data
    assert task.driver_state.position == len(data)
