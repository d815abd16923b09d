"""``nbupload serve`` as a subprocess answering curl, and the ``token``/``etag`` commands."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


from nbupload.protocols import wcs

from .conftest import SEED_BOUNDARY, data_of

CURL = "/usr/bin/curl"
PY = sys.executable
SECRET = "cli-secret-never-printed"


def nbupload(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "nbupload", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=check,
    )


@contextlib.contextmanager
def serve(*args: str, prelude: str = "") -> Iterator[tuple[str, subprocess.Popen]]:
    """``nbupload serve --port 0 ...`` in a subprocess; yields its URL from the one stdout line."""
    code = f"import sys\n{prelude}\nfrom nbupload.cli import main\nsys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [PY, "-c", code, "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"nbupload: serving on (https?://127\.0\.0\.1:\d+) \(root (.+)\)\n", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield m.group(1), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CURL, "-sS", *args], capture_output=True, timeout=60, check=True)


def _independent_sign(secret: str, data: str) -> str:
    # written from the document, not from nbupload: urlsafe b64 of the hex HMAC-SHA1
    return base64.urlsafe_b64encode(
        hmac.new(secret.encode(), data.encode(), hashlib.sha1).hexdigest().encode()
    ).decode()


def test_token_command_matches_the_documented_signature():
    assert "UMU:" + _independent_sign("key", "The quick brown fox jumps over the lazy dog") == (
        "UMU:ZGU3YzliODViOGI3OGFhNmJjOGE3YTM2ZjcwYTkwNzAxYzlkYjRkOQ=="
    )
    out = nbupload(
        "token",
        "--ak",
        "UMU",
        "--sk",
        "key",
        "--scope",
        "bkt:k",
        "--deadline",
        "1700000000000",
        "--fsize-limit",
        "1MiB",
        "--return-body",
        "key=$(key)",
    ).stdout.strip()
    ak, sign, policy = out.split(":")
    assert ak == "UMU" and sign == _independent_sign("key", policy)
    assert json.loads(base64.urlsafe_b64decode(policy)) == {
        "scope": "bkt:k",
        "deadline": "1700000000000",
        "fsizeLimit": 1048576,
        "returnBody": "key=$(key)",
    }
    # the secret from the environment; --expires sets a deadline in the future
    out = nbupload(
        "token", "--ak", "UMU", "--scope", "b", "--expires", "60", env={"NBUPLOAD_SECRET_KEY": "key"}
    ).stdout
    policy_obj = json.loads(base64.urlsafe_b64decode(out.strip().split(":")[2]))
    assert 0 < int(policy_obj["deadline"]) - time.time() * 1000 <= 61_000
    missing = nbupload("token", "--ak", "UMU", "--scope", "b", env={"NBUPLOAD_SECRET_KEY": ""}, check=False)
    assert (
        missing.returncode == 2
        and "NBUPLOAD_SECRET_KEY" in missing.stderr
        and "Traceback" not in missing.stderr
    )


def test_etag_command_vectors(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    mail = tmp_path / "mail"
    mail.write_bytes(b"UMUTech@qq.com")
    assert nbupload("etag", str(empty)).stdout.strip() == "Fto5o-5ea0sNMlW_75VgGJCv2AcJ"
    assert nbupload("etag", str(mail)).stdout.strip() == "FpAEzHGOWdh-QAYhattxl1vqHLMw"
    big = tmp_path / "big"
    data = data_of(4 * 1024 * 1024 + 7)
    big.write_bytes(data)
    lines = nbupload("etag", str(mail), str(big)).stdout.splitlines()
    assert lines == [f"FpAEzHGOWdh-QAYhattxl1vqHLMw  {mail}", f"{wcs.etag_of(data)}  {big}"]
    bad = nbupload("etag", str(tmp_path / "missing"), check=False)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr


def test_serve_answers_curl_requests_from_the_seed_documents(tmp_path):
    root = tmp_path / "root"
    creds = tmp_path / "creds"
    creds.write_text(f"# access keys\nAKCLI:{SECRET}\n")
    with serve("--root", str(root), "--credentials-file", str(creds)) as (url, proc):
        # the secret never reaches the process list
        assert SECRET not in " ".join(Path(f"/proc/{proc.pid}/cmdline").read_text().split("\0"))
        # 1. the uploader query, exactly the seed's body
        r = curl(
            "-X",
            "POST",
            "-H",
            "Content-Type: application/x-www-form-urlencoded",
            "--data",
            f"server=uploader&action=query&boundary={SEED_BOUNDARY}",
            f"{url}/upload",
        )
        assert json.loads(r.stdout) == {
            "protocol": "uploader",
            "support": True,
            "boundary": SEED_BOUNDARY,
            "file": [],
            "data": [],
        }
        # 2. a chunk shaped like the seed's example, sent as raw bytes
        chunk = data_of(102400, 9)
        body = tmp_path / "chunk.body"
        body.write_bytes(
            f'--{SEED_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="image.jpg"; '
            f'range="102400-204800/456770"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + chunk
            + f'\r\n--{SEED_BOUNDARY}\r\nContent-Disposition: form-data; name="submit"\r\n\r\n'
            f".....\r\n--{SEED_BOUNDARY}--\r\n".encode()
        )
        r = curl(
            "-H",
            f"Content-Type: multipart/form-data; boundary={SEED_BOUNDARY}",
            "--data-binary",
            f"@{body}",
            f"{url}/upload",
        )
        assert json.loads(r.stdout) == {
            "result": "OK",
            "code": 0,
            "range": "102400-204800",
            "complete": False,
        }
        r = curl("--data", f"server=uploader&action=query&boundary={SEED_BOUNDARY}", f"{url}/upload")
        assert json.loads(r.stdout)["file"] == [{"name": "file", "range": "102400-204800"}]
        # 3. a plain upload with curl -F
        photo = tmp_path / "8.png"
        photo.write_bytes(data_of(300_000, 10))
        r = curl("-F", f"file=@{photo}", "-F", "name=value", f"{url}/upload")
        assert json.loads(r.stdout)["complete"] is True
        assert (root / "8.png").read_bytes() == photo.read_bytes()
        # 4. the WCS document's append example (file part first), token from the CLI
        tok = nbupload(
            "token", "--ak", "AKCLI", "--scope", "test", env={"NBUPLOAD_SECRET_KEY": SECRET}
        ).stdout.strip()
        r = curl(
            "-v",
            "-i",
            "-X",
            "POST",
            "-H",
            "Expect:",
            "-F",
            f"file=@{photo}",
            "-F",
            "key=m.png",
            "-F",
            f"token={tok}",
            "--url",
            f"{url}/append/0",
        )
        head, _, payload = r.stdout.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert f"x-wcs-next-append-position: {photo.stat().st_size}".encode() in head
        assert b"x-wcs-object-type: Appendable" in head
        assert base64.urlsafe_b64decode(payload) == f"hash={wcs.etag_of(photo.read_bytes())}".encode()
        assert (root / "test" / "m.png").read_bytes() == photo.read_bytes()
        # a second append at the wrong position: 409 with the real size
        r = curl(
            "-i",
            "-H",
            "Expect:",
            "-F",
            f"file=@{photo}",
            "-F",
            "key=m.png",
            "-F",
            f"token={tok}",
            f"{url}/append/0",
        )
        assert r.stdout.startswith(b"HTTP/1.1 409")
        assert f"x-wcs-next-append-position: {photo.stat().st_size}".encode() in r.stdout
        # stats as JSON
        stats = json.loads(curl(f"{url}/_nbupload/stats").stdout)
        assert stats["uploader"]["requests"] == 4 and stats["wcs"]["completed"] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        err = proc.stderr.read()
        assert "Traceback" not in err and SECRET not in err


def test_serve_stops_on_ctrl_c(tmp_path):
    with serve("--root", str(tmp_path / "r")) as (url, proc):
        assert json.loads(curl(f"{url}/").stdout)["server"] == "nbupload"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0


def test_serve_without_the_server_extra_says_what_to_install(tmp_path):
    code = "import sys\nsys.modules['uvicorn'] = None\nfrom nbupload.cli import main\nsys.exit(main(sys.argv[1:]))"
    r = subprocess.run(
        [PY, "-c", code, "serve", "--port", "0", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "pip install 'nbupload[server]'" in r.stderr and "Traceback" not in r.stderr


def test_serve_rejects_bad_options_without_traceback(tmp_path):
    r = nbupload("serve", "--max-file-size", "lots", check=False)
    assert r.returncode == 2 and "invalid size" in r.stderr and "Traceback" not in r.stderr
    r = nbupload("serve", "--credentials", f"nocolon{SECRET}", check=False)
    assert r.returncode == 2 and SECRET not in r.stderr
    (tmp_path / "bad").write_text("just-a-key\n")
    r = nbupload("serve", "--port", "0", "--credentials-file", str(tmp_path / "bad"), check=False)
    assert r.returncode == 2 and "ACCESS_KEY:SECRET_KEY" in r.stderr and "Traceback" not in r.stderr


FSIZE_PRELUDE = "import resource\nresource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))"


def test_4007_and_507_when_the_disk_refuses_writes(tmp_path):
    """RLIMIT_FSIZE makes every write past 1 MiB fail with EFBIG, as a full disk would."""
    import httpx

    from nbupload.protocols.multipart import new_boundary

    from .conftest import AK, SK, append, query, send_chunk, token

    root = tmp_path / "root"
    big = data_of(2 * 1024 * 1024, 11)
    with (
        serve("--root", str(root), "--credentials", f"{AK}:{SK}", prelude=FSIZE_PRELUDE) as (url, proc),
        httpx.Client(timeout=30) as client,
    ):
        r = client.post(f"{url}/upload", files={"file": ("big.bin", big)})
        assert r.status_code == 507 and r.json()["code"] == 4007, r.text
        assert not (root / "big.bin").exists()
        assert [p.name for p in (root / ".partial").iterdir()] == []  # temp file removed
        boundary = new_boundary()
        r = send_chunk(client, f"{url}/upload", boundary, big, 0, len(big), filename="chunked.bin")
        assert r.status_code == 507 and r.json()["code"] == 4007
        assert query(client, f"{url}/upload", boundary).ranges_for("file").covered() == 0
        assert not (root / "chunked.bin").exists()
        tok = token("bkt")
        assert append(client, url, 0, b"head", tok, key="obj").ok
        ans = append(client, url, 4, big, tok, key="obj")
        assert ans.status == 507
        assert (root / "bkt" / "obj").read_bytes() == b"head"  # truncated back
        # the server is still fine for what fits
        assert client.post(f"{url}/upload", files={"file": ("small.bin", big[:1000])}).status_code == 200
        assert append(client, url, 4, b"more", tok, key="obj").hash == wcs.etag_of(b"headmore")
