"""HTTPS end to end (PROTOCOLS.md C2): both protocols, pause/resume, SIGKILL + resume, and the
clear errors (plain HTTP to the HTTPS port, an untrusted certificate)."""

from __future__ import annotations

import hashlib
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

import nbupload
from nbupload.engine import Engine, EngineConfig, TaskState
from nbupload.server import start_server
from nbupload.server.tls import self_signed
from tests.support.cliproc import cli_killed_after, run_cli

from .conftest import AK, SK, data_of, wait_for
from .test_cli import serve


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return self_signed(directory=tmp_path_factory.mktemp("tls"))


def _gate(chunk_gate, srv, cert, passes):
    """A gate in front of the HTTPS server (it presents the server's certificate): the upload
    cannot finish before the test acts on it."""
    upstream = ssl.create_default_context(cafile=str(cert.ca_file))
    return chunk_gate(srv.url, passes, server_ssl=cert.context, upstream_ssl=upstream)


@pytest.fixture
def tls_server(tmp_path, cert):
    with start_server(tmp_path / "root", credentials={AK: SK}, ssl=cert.context) as srv:
        yield srv


@pytest.fixture
def engine(tmp_path, cert):
    eng = Engine(
        EngineConfig(verify=str(cert.ca_file), journal_dir=tmp_path / "journal", chunk_size=256 << 10)
    )
    yield eng
    eng.shutdown(wait=True, timeout=10)


def test_both_protocols_over_tls(tls_server, engine, tmp_path):
    assert tls_server.url.startswith("https://")
    src = tmp_path / "a.bin"
    src.write_bytes(data_of(1_300_000, seed=3))
    nbupload.upload(str(src), tls_server.upload_url, engine=engine, wait=True)
    assert _sha(tls_server.root / "a.bin") == _sha(src)
    nbupload.upload(
        str(src),
        tls_server.url,
        protocol="wcs-append",
        access_key=AK,
        secret_key=SK,
        scope="bkt",
        key="w/a.bin",
        engine=engine,
        wait=True,
    )
    assert _sha(tls_server.root / "bkt" / "w" / "a.bin") == _sha(src)


def test_upload_verify_argument_sets_the_check(tls_server, tmp_path, cert):
    eng = Engine(EngineConfig(journal_dir=tmp_path / "journal"))
    try:
        src = tmp_path / "v.bin"
        src.write_bytes(data_of(10_000))
        nbupload.upload(str(src), tls_server.upload_url, engine=eng, wait=True, verify=str(cert.ca_file))
        assert eng.config.verify == str(cert.ca_file)
        assert _sha(tls_server.root / "v.bin") == _sha(src)
    finally:
        eng.shutdown(wait=True, timeout=10)


def test_pause_and_resume_over_tls(tmp_path, cert, engine, chunk_gate):
    src = tmp_path / "p.bin"
    src.write_bytes(data_of(8_000_000, seed=4))
    with start_server(tmp_path / "root", ssl=cert.context, throttle=1_000_000) as srv:
        gate = _gate(chunk_gate, srv, cert, passes=1)  # one chunk, then held: unfinished at the pause
        task = nbupload.upload(str(src), gate.upload_url, engine=engine)
        wait_for(lambda: task.snapshot().acked >= 256 << 10, timeout=60)
        task.pause()
        wait_for(lambda: task.state == TaskState.PAUSED, timeout=60)
        paused = task.snapshot()
        assert 0 < paused.acked < paused.total
        assert not (srv.root / "p.bin").exists()
        gate.open()
        task.resume()
        task.wait(60, raise_on_error=True)
        assert _sha(srv.root / "p.bin") == _sha(src)


def test_sigkill_then_resume_over_tls_with_cacert(tmp_path, cert, chunk_gate):
    home = tmp_path / "home"
    src = tmp_path / "k.bin"
    src.write_bytes(data_of(3_000_000, seed=6))
    with start_server(tmp_path / "root", ssl=cert.context, throttle=1_500_000) as srv:
        gate = _gate(chunk_gate, srv, cert, passes=1)  # one chunk, then held: unfinished at the kill
        cli_killed_after(
            "put", str(src), gate.upload_url, "--chunk-size", "256KiB", "--quiet",
            "--cacert", str(cert.ca_file), home=home, acked=256 << 10,
        )  # fmt: skip
        gate.open()
        assert not (srv.root / "k.bin").exists()
        done = run_cli("resume", "--all", "--quiet", "--cacert", str(cert.ca_file), home=home)
        assert done.returncode == 0, done.stderr
        assert _sha(srv.root / "k.bin") == _sha(src)


def test_an_untrusted_certificate_is_a_clear_error_and_insecure_skips_the_check(tls_server, tmp_path):
    home = tmp_path / "home"
    src = tmp_path / "u.bin"
    src.write_bytes(data_of(5000))
    done = run_cli("put", str(src), tls_server.upload_url, "--quiet", "--retries", "0", home=home)
    assert done.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr or "certificate verify failed" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli("put", str(src), tls_server.upload_url, "--quiet", "--insecure", home=home)
    assert done.returncode == 0, done.stderr
    assert _sha(tls_server.root / "u.bin") == _sha(src)


def test_plain_http_to_the_https_port_says_to_use_https(tls_server, tmp_path):
    home = tmp_path / "home"
    src = tmp_path / "h.bin"
    src.write_bytes(data_of(5000))
    plain = tls_server.upload_url.replace("https://", "http://")
    done = run_cli("put", str(src), plain, "--quiet", "--retries", "0", home=home)
    assert done.returncode != 0
    assert "https://" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_serve_certfile_keyfile_from_the_command_line(tmp_path, cert, engine):
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    certfile, keyfile, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(certfile))
    leaf.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    src = tmp_path / "c.bin"
    src.write_bytes(data_of(700_000, seed=8))
    for workers in ("1", "2"):
        with serve(
            "--root",
            str(tmp_path / "root"),
            "--certfile",
            str(certfile),
            "--keyfile",
            str(keyfile),
            "--workers",
            workers,
        ) as (url, _):
            assert url.startswith("https://")
            engine.configure(verify=str(cafile))
            nbupload.upload(str(src), url + "/upload", filename=f"c{workers}.bin", engine=engine, wait=True)
            assert _sha(tmp_path / "root" / f"c{workers}.bin") == _sha(src)


def test_serve_says_what_is_wrong_with_a_certificate(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    for args, expected in [
        (["--certfile", str(tmp_path / "missing.pem")], "no such file"),
        (["--certfile", str(bad)], "cannot use the TLS certificate"),
        (["--certfile", str(bad), "--workers", "2"], "cannot use the TLS certificate"),
        (["--keyfile", str(bad)], "--keyfile needs --certfile"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "nbupload", "serve", "--root", str(tmp_path / "r"), "--port", "0", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and expected in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
