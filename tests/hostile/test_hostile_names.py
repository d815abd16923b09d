"""Hostile filenames, keys and buckets, and symlinks planted under the root.

Every catalogue entry goes to a real server process over a raw socket. Uploader filenames
must be stored under harmless names inside the root (a clean relative path keeps its
folders, PROTOCOLS.md A8); unsafe WCS keys and buckets
must be refused with 400; nothing may be written outside the root (``fence``).
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from pathlib import Path

import pytest
from hostile_catalogue import BUCKETS, FILENAMES, KEYS, HostileKey, HostileName, catalogue_size
from hostile_fixtures import ACCESS_KEY, SECRET_KEY, HostileServer
from hostile_client import append, make_token, plain_body, post_multipart, upload_resumable
from hostile_net import raw_exchange

from nbupload.protocols import uploader as up
from nbupload.protocols import wcs
from nbupload.protocols.multipart import new_boundary
from nbupload.server.sessions import PARTIAL_DIR

pytestmark = pytest.mark.timeout(120)


def test_the_catalogue_is_big_enough():
    assert catalogue_size() >= 50
    assert len({n.id for n in FILENAMES}) == len(FILENAMES)
    assert len({k.id for k in KEYS + BUCKETS}) == len(KEYS + BUCKETS)


def _assert_safe_stored_name(root: Path, stored: str, data: bytes) -> None:
    # A clean relative path keeps its folders (PROTOCOLS.md A8); every component is safe.
    assert stored and "\\" not in stored and "\x00" not in stored
    for comp in stored.split("/"):
        assert comp and not comp.startswith("."), stored
        assert len(comp.encode("utf-8")) <= 255
        assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in comp), repr(stored)
    path = root / stored
    assert root in path.parents and path.is_file() and not path.is_symlink()
    assert path.resolve().is_relative_to(root.resolve())
    assert path.read_bytes() == data


@pytest.mark.parametrize("case", FILENAMES, ids=lambda c: c.id)
def test_hostile_filename_is_stored_under_a_safe_name(fence, case: HostileName):
    server = fence
    data = os.urandom(3000) + case.id.encode()
    answers = upload_resumable(server.address, case.raw, data, chunk=1024)
    assert all(a is not None for a in answers)
    assert answers[0].status == 200 and json.loads(answers[0].body)["support"] is True
    for answer in answers[1:]:
        assert answer.status == 200, answer.text
    final = up.process_chunk_answer(answers[-1].status, answers[-1].body)
    assert final.ok and final.complete, answers[-1].text
    _assert_safe_stored_name(server.root, final.extra["stored"], data)

    # The same name through a plain (non-resumable) upload.
    boundary = new_boundary()
    plain = raw_exchange(
        server.address, post_multipart("/upload", boundary, plain_body(boundary, case.raw, data[::-1]))
    )
    assert plain is not None
    if case.raw == b"":  # an empty filename without range is a browser's empty file input
        assert (plain.status, json.loads(plain.body)["code"]) == (400, 4004), plain.text
        return
    assert plain.status == 200, plain.text
    _assert_safe_stored_name(server.root, json.loads(plain.body)["stored"], data[::-1])


def _token(scope: str) -> str:
    return make_token(scope, access_key=ACCESS_KEY, secret_key=SECRET_KEY)


def _wcs_error(answer) -> dict:
    assert answer is not None
    obj = json.loads(answer.body)
    assert set(obj) >= {"code", "message"} and obj["message"]
    return obj


@pytest.mark.parametrize("case", KEYS, ids=lambda c: c.id)
def test_hostile_key(fence, case: HostileKey):
    server = fence
    data = b"append me " + case.id.encode()
    answer = append(server.address, 0, _token("bkt"), data, key=case.value)
    assert answer is not None
    if case.refuse:
        assert answer.status == 400, answer.text
        _wcs_error(answer)
    else:
        assert answer.status == 200, answer.text
        result = wcs.process_append_answer(answer.status, list(answer.headers.items()), answer.body)
        assert result.next_position == len(data) and result.hash == wcs.etag_of(data)
        path = server.root / "bkt" / case.value
        assert path.is_file() and not path.is_symlink() and path.read_bytes() == data
        assert server.root.resolve() in path.resolve().parents


@pytest.mark.parametrize("case", BUCKETS, ids=lambda c: c.id)
def test_hostile_bucket_in_a_valid_token(fence, case: HostileKey):
    answer = append(fence.address, 0, _token(f"{case.value}:k.log"), b"data")
    assert answer is not None and answer.status == 400, answer and answer.text
    _wcs_error(answer)


# --------------------------------------------------------------------------- planted symlinks
def test_symlinked_bucket_is_refused(fence):
    server = fence
    os.symlink(server.outside, server.root / "linkbkt")
    answer = append(server.address, 0, _token("linkbkt"), b"data", key="x.log")
    assert answer is not None and answer.status == 400, answer and answer.text
    assert "symlink" in _wcs_error(answer)["message"]


def test_symlinked_directory_inside_a_key_is_refused(fence):
    server = fence
    (server.root / "bkt2").mkdir(exist_ok=True)
    os.symlink(server.outside, server.root / "bkt2" / "sub")
    answer = append(server.address, 0, _token("bkt2"), b"data", key="sub/x.log")
    assert answer is not None and answer.status == 400, answer and answer.text


def test_symlinked_object_is_not_written_through(fence):
    server = fence
    (server.root / "bkt3").mkdir(exist_ok=True)
    os.symlink(server.outside / "victim.txt", server.root / "bkt3" / "obj.log")
    for position in (0, len(b"must never change\n")):
        answer = append(server.address, position, _token("bkt3"), b"data", key="obj.log")
        assert answer is not None and answer.status in (400, 409), answer and answer.text


def test_symlink_at_the_final_name_is_replaced_not_followed(fence):
    server = fence
    os.symlink(server.outside / "victim.txt", server.root / "linked.bin")
    data = os.urandom(5000)
    answers = upload_resumable(server.address, b"linked.bin", data, chunk=2000)
    assert [a.status for a in answers] == [200] * len(answers)
    stored = json.loads(answers[-1].body)["stored"]
    path = server.root / stored
    assert not path.is_symlink() and path.read_bytes() == data


def test_symlinked_partial_session_dir_is_refused_with_4006(fence):
    """A symlink planted where a session's partial directory will be (its name is a hash
    of the boundary, so it can be predicted) must not carry chunks outside the root."""
    server = fence
    boundary = new_boundary()
    sid = hashlib.sha256(boundary.encode()).hexdigest()[:32]
    partial = server.root / PARTIAL_DIR
    partial.mkdir(exist_ok=True)
    os.symlink(server.outside, partial / sid)
    answers = upload_resumable(
        server.address, b"via-link.bin", os.urandom(3000), chunk=1000, boundary=boundary
    )
    for answer in answers[1:]:
        judged = up.process_chunk_answer(answer.status, answer.body)
        assert (answer.status, judged.code) == (500, 4006), answer.text
    assert not (server.root / "via-link.bin").exists()
    assert sorted(p.name for p in server.outside.iterdir()) == ["victim.txt"]


@pytest.mark.parametrize("planted", [".wcs", ".wcs/spool"])
@pytest.mark.parametrize("token_first", [True, False], ids=["token-first", "file-first"])
def test_symlinked_wcs_sidecar_or_spool_dir_is_refused_with_507(tmp_path, planted, token_first):
    """``ROOT/.wcs`` (sidecars) or ``ROOT/.wcs/spool`` planted as a symlink to a directory
    outside: nothing may land there, and the append fails as a disk failure, leaving no object."""
    server = HostileServer(tmp_path)
    link = server.root / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(server.outside, link)
    server.proc.start()
    try:
        answer = append(server.address, 0, _token("bkt"), b"data", key="k.log", token_first=token_first)
        assert answer is not None
        if planted == ".wcs/spool" and token_first:  # no spooling needed: a normal append
            assert answer.status == 200, answer.text
        else:
            assert answer.status == 507, answer.text
            assert not (server.root / "bkt" / "k.log").exists()
        assert sorted(p.name for p in server.outside.iterdir()) == ["victim.txt"]
        assert server.proc.alive
    finally:
        server.proc.stop()


def test_symlinked_partial_root_gives_4006(tmp_path):
    server = HostileServer(tmp_path)
    os.symlink(server.outside, server.root / PARTIAL_DIR)
    server.proc.start()
    try:
        answers = upload_resumable(server.address, b"x.bin", os.urandom(2000), chunk=1000)
        last = up.process_chunk_answer(answers[1].status, answers[1].body)
        assert (last.ok, last.code, answers[1].status) == (False, 4006, 500), answers[1].text
        assert sorted(p.name for p in server.outside.iterdir()) == ["victim.txt"]
        assert not (server.root / "x.bin").exists()
    finally:
        server.proc.stop()
