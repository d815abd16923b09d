"""Names in Content-Disposition, as the reference server reads them (docs/protocols.md).

What browsers and curl send (``"`` as ``%22``, CR/LF as ``%0D``/``%0A``, a backslash raw) and
what nbupload sends (the same, plus ``%5C`` for a backslash and ``%25`` for a ``%`` that would
read as an escape) both arrive intact; a disposition whose parameters do not parse is refused
with 400 before a byte is stored, never read as something else.
"""

from __future__ import annotations

import subprocess

import pytest

from nbupload.protocols import wcs
from nbupload.protocols.errors import ProtocolError
from nbupload.protocols.multipart import BytesSource, new_boundary
from nbupload.protocols.ranges import RangeSet
from nbupload.server.parts import parse_disposition

from .conftest import answer, append, data_of, query, send_chunk, token, tree

CURL = "/usr/bin/curl"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # what browsers and curl 7.81+ send: a backslash is an ordinary character
        (
            b'form-data; name="file"; filename="weird\\"; range="0-5/10"',
            {"name": "file", "filename": "weird\\", "range": "0-5/10"},
        ),
        (
            b'form-data; name="f"; filename="a\\b%22c%0D%0Ad.txt"',
            {"name": "f", "filename": 'a\\b"c\r\nd.txt'},
        ),
        ('form-data; name="f"; filename="报告 é.xlsx"'.encode(), {"name": "f", "filename": "报告 é.xlsx"}),
        # what nbupload sends
        (
            b'form-data; name="f"; filename="weird%5C"; range="0-5/10"',
            {"name": "f", "filename": "weird\\", "range": "0-5/10"},
        ),
        (
            b'form-data; name="f"; filename="100%2522 %25 50% off"',
            {"name": "f", "filename": "100%22 % 50% off"},
        ),
        # tokens, spaces, a trailing ";", the seed's "attachments", an RFC 5987 parameter ignored
        (b"attachments;name=f ; filename=a b.txt;", {"name": "f", "filename": "a b.txt"}),
        (
            b'form-data; name="f"; filename*=UTF-8\'\'%E2%82%AC.txt; filename="eur.txt"',
            {"name": "f", "filename": "eur.txt"},
        ),
        (b'form-data; name="a;b=c"; filename="x"', {"name": "a;b=c", "filename": "x"}),
    ],
)
def test_what_browsers_curl_and_nbupload_send_is_read_exactly(raw, expected):
    kind, params = parse_disposition(raw)
    assert kind in ("form-data", "attachments") and params == expected


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b'form-data; name="file"; filename="a; range=0-5/10', "unterminated"),
        (b'form-data; name="file"; filename="a; range="0-5/10', "followed by"),
        (b'form-data; name="file"; filename="a\\"b"; range="0-5/10"', "followed by"),  # a backslash escape
        (b'form-data; name="file"; filename=a"b; range="0-5/10"', "stray quote"),
        (b'form-data; name="file"; filename; range="0-5/10"', "without a value"),
        (b'form-data; name="file"; filename="a" "b"; range="0-5/10"', "followed by"),
        (b'form-data; name="file"; filename="a"; filename="b"', "more than once"),
    ],
)
def test_parameters_that_do_not_parse_are_refused(raw, needle):
    with pytest.raises(ProtocolError, match=needle):
        parse_disposition(raw)


def _raw_chunk(boundary: str, disposition: bytes, data: bytes) -> bytes:
    return (
        b"--"
        + boundary.encode()
        + b"\r\nContent-Disposition: "
        + disposition
        + b"\r\n\r\n"
        + data
        + b"\r\n--"
        + boundary.encode()
        + b"--\r\n"
    )


@pytest.mark.parametrize(
    "disposition",
    [
        b'form-data; name="file"; filename="weird\\"b"; range="0-5/5"',  # the range would be lost
        b'form-data; name="file"; filename="weird; range="0-5/5"',
        b'form-data; name="file"; filename="x"; range="0-5/5"; junk',
    ],
)
def test_a_chunk_whose_disposition_does_not_parse_is_refused_with_400(server, client, disposition):
    boundary = new_boundary()
    r = client.post(
        server.upload_url,
        content=_raw_chunk(boundary, disposition, b"12345"),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 400, r.text
    body = answer(r)
    assert body["result"] == "ERROR" and body["code"] == 400 and "Content-Disposition" in body["message"]
    assert tree(server.root) == []  # nothing stored, not even a session


def test_a_filename_that_changes_within_a_session_is_refused(server, client):
    boundary = new_boundary()
    data = data_of(3000)
    assert send_chunk(client, server.upload_url, boundary, data, 0, 1000, filename="a.bin").status_code == 200
    r = send_chunk(client, server.upload_url, boundary, data, 1000, 2000, filename="b.bin")
    assert r.status_code == 400 and answer(r)["code"] == 400
    assert "'b.bin' differs from the 'a.bin'" in answer(r)["message"]
    assert query(client, server.upload_url, boundary).ranges_for("file") == RangeSet([(0, 1000)])
    assert (
        send_chunk(client, server.upload_url, boundary, data, 1000, 3000, filename="a.bin").status_code == 200
    )
    assert (server.root / "a.bin").read_bytes() == data and not (server.root / "b.bin").exists()


@pytest.mark.parametrize(
    ("filename", "stored"), [("w\\", "w"), ('a"b.txt', 'a"b.txt'), ("50% off;x=1.txt", "50% off;x=1.txt")]
)
def test_curl_sends_names_as_browsers_do_and_they_arrive(server, tmp_path, filename, stored):
    """curl -F writes ``"`` as ``%22`` and a backslash raw, like browsers (HTML form encoding)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / filename).write_bytes(b"x" * 1000)
    quoted = '"' + filename.replace("\\", "\\\\").replace('"', '\\"') + '"'  # curl -F's own quoting
    r = subprocess.run(
        [CURL, "-sS", "-F", f"file=@{quoted}", server.upload_url],
        cwd=src,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert b'"result":"OK"' in r.stdout, r.stdout
    assert (server.root / stored).read_bytes() == b"x" * 1000


def test_wcs_reads_the_file_part_name_exactly(server, client):
    tok = token("bkt", returnBody="fname=$(fname)&who=$(x:who)")
    enc = wcs.prepare_append(
        tok, BytesSource(b"abc"), key="k.bin", filename='weird\\ "%22"', variables={"who": "me"}
    )
    r = client.post(f"{server.url}/append/0", content=iter(enc), headers=enc.headers)
    ans = wcs.process_append_answer(r.status_code, r.headers.items(), r.content)
    assert ans.ok, (r.status_code, r.text)
    assert ans.fields["fname"] == 'weird\\ "%22"' and ans.fields["who"] == "me"
    assert (server.root / "bkt" / "k.bin").read_bytes() == b"abc"


def test_wcs_refuses_a_file_part_whose_disposition_does_not_parse(server, client):
    tok = token("bkt")
    boundary = new_boundary()
    body = (
        b"--"
        + boundary.encode()
        + b'\r\nContent-Disposition: form-data; name="token"\r\n\r\n'
        + tok.encode()
        + b"\r\n--"
        + boundary.encode()
        + b'\r\nContent-Disposition: form-data; name="key"\r\n\r\nk.bin\r\n'
        + _raw_chunk(boundary, b'form-data; name="file"; filename="unterminated', b"abc")
    )
    r = client.post(
        f"{server.url}/append/0",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    ans = wcs.process_append_answer(r.status_code, r.headers.items(), r.content)
    assert r.status_code == 400 and not ans.ok and "unterminated" in ans.message
    assert not (server.root / "bkt" / "k.bin").exists()
    assert append(client, server.url, 0, b"abc", tok, key="k.bin").ok  # position 0 still free
