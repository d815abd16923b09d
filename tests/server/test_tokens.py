"""Access control on the uploader route (PROTOCOLS.md A9): ``require_token``."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from nbupload.protocols import uploader
from nbupload.server import start_server
from tests.support.cliproc import cli_killed_after, run_cli

from .conftest import AK, SEED_BOUNDARY, SK, data_of, send_chunk, token, tree


@pytest.fixture
def guarded(tmp_path):
    with start_server(tmp_path / "root", credentials={AK: SK}, require_token=True) as srv:
        yield srv


def _query(
    client: httpx.Client, url: str, boundary: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    h, body = uploader.prepare_query(boundary)
    return client.post(url, content=body, headers={**h, **(headers or {})})


def _chunk(client, url, data, *, headers=None, filename="f.bin", boundary=SEED_BOUNDARY) -> httpx.Response:
    enc = uploader.prepare_chunk(boundary, _src(data), 0, len(data), filename=filename)
    return client.post(url, content=iter(enc), headers={**enc.headers, **(headers or {})})


def _src(data: bytes):
    from nbupload.protocols.multipart import BytesSource

    return BytesSource(data)


def _refused(r: httpx.Response, tok: str | None = None) -> str:
    body = json.loads(r.content)
    assert r.status_code == 401 and body["result"] == "ERROR" and body["code"] == 401, r.text
    if tok:
        assert tok not in r.text and all(p not in r.text for p in tok.split(":")[1:])  # never echoed
    return body["message"]


BAD_TOKENS = {
    "forged": lambda: token("inbox", sk="guessed-secret"),
    "expired": lambda: token("inbox", deadline_ms=int(time.time() * 1000) - 1000),
    "unknown key": lambda: token("inbox", ak="nobody"),
    "malformed": lambda: "not-a-token",
}


def test_no_token_is_401_before_anything_is_stored(guarded, client):
    before = tree(guarded.root)
    assert "token is required" in _refused(_query(client, guarded.upload_url, SEED_BOUNDARY))
    _refused(_chunk(client, guarded.upload_url, data_of(50_000)))
    assert tree(guarded.root) == before


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_bad_tokens_are_401(guarded, client, kind):
    tok = BAD_TOKENS[kind]()
    before = tree(guarded.root)
    _refused(_query(client, guarded.upload_url, SEED_BOUNDARY, {"Authorization": f"UpToken {tok}"}), tok)
    _refused(
        _chunk(client, guarded.upload_url, data_of(50_000), headers={"Authorization": f"UpToken {tok}"}), tok
    )
    _refused(_chunk(client, f"{guarded.upload_url}?token={tok}", data_of(50_000)), tok)
    assert tree(guarded.root) == before


def test_out_of_scope_name_is_401(guarded, client):
    tok = token("inbox:only.csv")
    msg = _refused(
        _chunk(
            client,
            guarded.upload_url,
            data_of(1000),
            filename="other.bin",
            headers={"Authorization": f"UpToken {tok}"},
        ),
        tok,
    )
    assert "scope" in msg
    assert not (guarded.root / "inbox").exists()
    r = _chunk(
        client,
        guarded.upload_url,
        data_of(1000),
        filename="only.csv",
        headers={"Authorization": f"UpToken {tok}"},
    )
    assert r.status_code == 200
    assert (guarded.root / "inbox" / "only.csv").read_bytes() == data_of(1000)


def test_a_session_cannot_be_moved_to_another_scope(guarded, client):
    data = data_of(20_000)
    boundary = "----scope-switch"
    a, b = token("a"), token("b")
    r = send_chunk(client, guarded.upload_url + f"?token={a}", boundary, data, 0, 10_000)
    assert r.status_code == 200
    r = send_chunk(client, guarded.upload_url + f"?token={b}", boundary, data, 10_000, 20_000)
    _refused(r, b)
    assert not (guarded.root / "a" / "data.bin").exists() and not (guarded.root / "b").exists()


def test_valid_token_lands_files_in_its_folder_by_header_or_query(guarded, client):
    tok = token("inbox")
    data = data_of(30_000, seed=2)
    r = _query(client, guarded.upload_url, SEED_BOUNDARY, {"Authorization": f"UpToken {tok}"})
    assert r.status_code == 200 and json.loads(r.content)["support"] is True
    assert (
        _chunk(client, guarded.upload_url, data, headers={"Authorization": f"UpToken {tok}"}).status_code
        == 200
    )
    assert (guarded.root / "inbox" / "f.bin").read_bytes() == data
    r = _chunk(client, f"{guarded.upload_url}?token={tok}", data, filename="q.bin", boundary="----q")
    assert r.status_code == 200
    assert (guarded.root / "inbox" / "q.bin").read_bytes() == data
    assert not (guarded.root / "f.bin").exists()


def test_the_cli_sends_the_token_as_uptoken_and_never_keeps_or_prints_it(guarded, tmp_path):
    home = tmp_path / "home"
    src = tmp_path / "cli.bin"
    src.write_bytes(data_of(600_000, seed=9))
    tok = token("inbox")
    done = run_cli(
        "put", str(src), guarded.upload_url, "--token", tok, "--chunk-size", "256KiB", "--quiet", home=home
    )
    assert done.returncode == 0, done.stderr
    assert (guarded.root / "inbox" / "cli.bin").read_bytes() == src.read_bytes()
    assert tok not in done.stdout + done.stderr
    # a refused token: a clear failure, and still not shown
    bad = token("inbox", sk="guessed")
    done = run_cli(
        "put", str(src), guarded.upload_url, "--token", bad, "--quiet", "--filename", "no.bin", home=home
    )
    assert done.returncode != 0 and "401" in done.stderr
    assert bad not in done.stdout + done.stderr and bad.split(":")[1] not in done.stderr
    for path in home.rglob("*"):
        if path.is_file():
            assert bad.split(":")[1] not in path.read_text(errors="replace")
            assert tok.split(":")[1] not in path.read_text(errors="replace")


def test_serve_require_token_needs_credentials(tmp_path):
    done = run_cli(
        "serve", "--root", str(tmp_path), "--port", "0", "--require-token", home=tmp_path / "home", timeout=60
    )
    assert done.returncode != 0
    assert "--require-token" in done.stderr and "Traceback" not in done.stderr


def test_tokens_in_urls_are_masked_in_the_access_log(tmp_path):
    import logging

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(record.getMessage())

    tok = token("inbox")
    keep = Keep()
    access = logging.getLogger("uvicorn.access")  # uvicorn's access logger does not propagate
    with start_server(tmp_path / "root", credentials={AK: SK}, require_token=True, log_level="debug") as srv:
        access.addHandler(keep)
        try:
            with httpx.Client(timeout=30) as client:
                r = _chunk(client, f"{srv.upload_url}?token={tok}&x=1", data_of(1000))
                assert r.status_code == 200
        finally:
            access.removeHandler(keep)
    assert any("token=***" in line for line in keep.lines), keep.lines
    assert not any(tok.split(":")[1] in line for line in keep.lines)


def test_resume_token_is_sent_again_as_uptoken_for_an_uploader_task(tmp_path, chunk_gate):
    home = tmp_path / "home"
    src = tmp_path / "r.bin"
    src.write_bytes(data_of(3_000_000, seed=11))
    tok = token("inbox")
    with start_server(tmp_path / "root", credentials={AK: SK}, require_token=True, throttle=1_500_000) as srv:
        gate = chunk_gate(srv.url, passes=1)  # one chunk, then held: unfinished at the kill
        cli_killed_after(
            "put", str(src), gate.upload_url, "--token", tok, "--chunk-size", "256KiB", "--quiet",
            home=home, acked=256 << 10,
        )  # fmt: skip
        gate.open()
        for kept in (home / "tasks").glob("*.json"):
            assert tok.split(":")[1] not in kept.read_text()  # the journal never kept it
        done = run_cli("resume", "--all", "--quiet", "--token", tok, home=home)
        assert done.returncode == 0, done.stderr
        assert (srv.root / "inbox" / "r.bin").read_bytes() == src.read_bytes()
