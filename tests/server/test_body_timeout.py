"""A request body that goes silent is given up after ``body_timeout``: nothing is held."""

from __future__ import annotations

import socket
import time

import pytest

from nbupload.protocols import uploader
from nbupload.server import start_server
from tests.support.cliproc import run_cli
from tests.support.rawhttp import read_answer


def test_a_silent_body_is_cut_short_after_body_timeout(tmp_path):
    with start_server(root=tmp_path, body_timeout=0.5) as srv:
        boundary = "----timeout-test"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.bin"; '
            f'range="0-1000/1000"\r\n\r\n'
        ).encode()
        request = (
            (
                "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: "
                f"multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {len(head) + 1000 + 40}\r\n\r\n"
            ).encode()
            + head
            + b"x" * 100
        )
        with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
            sock.sendall(request)  # ... then nothing more
            started = time.monotonic()
            reply = read_answer(sock)  # headers and body may come in separate segments
            waited = time.monotonic() - started
        assert reply is not None, "the server closed without answering"
        assert (reply.status, reply.json()["code"]) == (400, uploader.ErrorCode.PARTIAL_UPLOAD)
        # Not a speed check: the server must not give up *before* body_timeout (a busy machine
        # only makes this longer); that it gives up at all is the answer above.
        assert waited >= 0.4
        assert not (tmp_path / "x.bin").exists()
        answer = uploader.process_query_answer(200, _query(srv, boundary), boundary)
        assert answer.resumable and not answer.ranges_for("file")  # the silent chunk holds nothing


def test_a_silent_append_body_is_answered_408_so_the_client_tries_again(tmp_path):
    """WCS has no code for it: 408 (retried by clients), not 400 (a refusal): a client whose
    append stalled on a busy link and is still there gets an answer it retries."""
    from .conftest import AK, SK, token

    with start_server(root=tmp_path, credentials={AK: SK}, body_timeout=0.5) as srv:
        boundary = "----append-timeout"
        fields = "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
            for k, v in (("token", token("bkt")), ("key", "slow.log"))
        )
        head = f'{fields}--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'
        request = (
            "POST /append/0 HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(head) + 1000 + 40}\r\n\r\n{head}"
        ).encode() + b"x" * 100
        with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
            sock.sendall(request)  # ... then nothing more
            reply = read_answer(sock)
        assert reply is not None, "the server closed without answering"
        assert reply.status == 408 and "no byte of the request body came" in reply.json()["message"], reply
        assert not (tmp_path / "bkt" / "slow.log").exists()  # nothing of it was stored


def _query(srv, boundary: str) -> bytes:
    import httpx

    headers, body = uploader.prepare_query(boundary)
    return httpx.post(srv.upload_url, headers=headers, content=body).content


@pytest.mark.parametrize("bad", ["0", "-5", "soon"])
def test_serve_rejects_a_bad_body_timeout(tmp_path, bad):
    done = run_cli(
        "serve",
        "--root",
        str(tmp_path),
        "--port",
        "0",
        "--body-timeout",
        bad,
        home=tmp_path / "home",
        timeout=30,
    )
    assert done.returncode == 2
    assert "--body-timeout" in done.stderr and "Traceback" not in done.stderr
