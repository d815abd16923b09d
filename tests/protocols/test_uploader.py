"""The uploader protocol's pure functions, including the seed document's own examples."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbupload.protocols import ProtocolError, RangeSet
from nbupload.protocols import uploader as up
from nbupload.protocols.multipart import BytesSource

SEED_BOUNDARY = "----WebKitFormBoundaryaXBly1C8VXJFfgdS"
# The seed's query body and its example query answer, byte for byte (line break included).
SEED_QUERY_BODY = b"server=uploader&action=query&boundary=----WebKitFormBoundaryaXBly1C8VXJFfgdS"
SEED_QUERY_ANSWER = (
    b'{protocol:"uploader",support:true,boundary:"----WebKitFormBoundaryaXBly1C8VXJFfgdS", file:\n\n'
    b'[[{name:"headimage",range:"0-102400"}]],data:[{name:"name value"}]}}'
)
# The format section's answer, with the seed's "uploder" typo.
SEED_FORMAT_ANSWER = b"""{
  protocol: "uploder",
  support: true,
  boundary: "boundary",
  file: [ { name: "headimage",
    range: "0-102400"
  }
],
  data: [ { name: "name"
  }
]
}"""


def test_query_request_matches_the_seed():
    headers, body = up.prepare_query(SEED_BOUNDARY)
    assert body == SEED_QUERY_BODY
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Content-Length"] == str(len(body)) == "76"
    assert up.parse_query_request(body) == SEED_BOUNDARY


def test_seed_query_answer_is_resumable():
    answer = up.process_query_answer(200, SEED_QUERY_ANSWER, SEED_BOUNDARY)
    assert answer.resumable, answer.reason
    assert answer.ranges_for("headimage") == RangeSet.parse("0-102400")
    assert answer.ranges_for("other") == RangeSet()
    assert answer.data == ("name value",)


def test_seed_format_answer_with_typo_is_resumable():
    answer = up.process_query_answer(200, SEED_FORMAT_ANSWER, "boundary")
    assert answer.resumable
    assert answer.ranges_for("headimage").covered() == 102400


@pytest.mark.parametrize(
    ("status", "body", "why"),
    [
        (404, b'{"support":true,"boundary":"B"}', "HTTP 404"),
        (200, b"<html>hello</html>", "unparseable"),
        (200, b'{"support":false,"boundary":"B"}', "does not support"),
        (200, b'{"boundary":"B"}', "does not support"),
        (200, b'{"support":true,"boundary":"other"}', "another boundary"),
        (200, b'{"support":true,"boundary":"B","file":[{"name":"f","range":"9-3"}]}', "bad range"),
        (200, b'{"support":true,"boundary":"B","file":["x"]}', "malformed file"),
        (200, b"[1,2]", "not an object"),
    ],
)
def test_bad_query_answers_mean_plain_mode(status, body, why):
    answer = up.process_query_answer(status, body, "B")
    assert not answer.resumable
    assert why in answer.reason


def test_several_ranges_and_repeated_names_merge():
    body = b'{"support":true,"boundary":"B","file":[{"name":"f","range":"0-10,20-30"},{"name":"f","range":"10-15"}]}'
    assert str(up.process_query_answer(200, body, "B").ranges_for("f")) == "0-15,20-30"


def test_query_answer_round_trip():
    held = {"file": RangeSet.parse("0-100,200-300"), "b": RangeSet()}
    body = up.format_query_answer("B", held, ["title"])
    answer = up.process_query_answer(200, body, "B")
    assert answer.resumable and dict(answer.held) == held and answer.data == ("title",)


@given(st.binary(max_size=300), st.integers(100, 599))
def test_query_answer_judge_never_raises(body, status):
    assert up.process_query_answer(status, body, "B").resumable in (True, False)


@pytest.mark.parametrize(
    ("status", "body", "ok", "code"),
    [
        (200, b'{result:"OK"}', True, None),
        (200, b'{"result":"OK","code":0}', True, 0),
        (200, b"", True, None),
        (200, b"<html>thanks</html>", True, None),
        (201, b'{"result":"OK"}', True, None),
        (200, b'{"result":"ERROR","code":4007,"message":"disk full"}', False, 4007),
        (413, b'{"result":"ERROR","code":4002}', False, 4002),
        (502, b"Bad Gateway", False, None),
        (500, b'{"result":"OK"}', False, None),
    ],
)
def test_chunk_answers_are_judged_like_the_original_runtime(status, body, ok, code):
    answer = up.process_chunk_answer(status, body)
    assert answer.ok is ok
    assert answer.code == code


def test_chunk_answer_details():
    answer = up.process_chunk_answer(413, b'{"result":"ERROR","code":4002}')
    assert answer.message == "File exceeded max_file_size"
    assert answer.describe() == "4002 File exceeded max_file_size"
    answer = up.process_chunk_answer(
        200, b'{"result":"OK","code":0,"range":"0-10","complete":true,"path":"a"}'
    )
    assert answer.held == RangeSet.parse("0-10") and answer.complete and answer.extra == {"path": "a"}
    assert up.process_chunk_answer(502, b"").describe() == "HTTP 502 Bad Gateway"


def test_error_table_is_the_seeds():
    assert sorted(up.ERROR_MESSAGES) == [0, 4001, 4002, 4003, 4004, 4006, 4007, 4008]
    assert 4005 not in up.ErrorCode._value2member_map_
    status, body = up.format_error(4001)
    assert status == 413
    answer = up.process_chunk_answer(status, body)
    assert (answer.ok, answer.code, answer.message) == (False, 4001, "File exceeded upload_max_filesize")
    assert up.format_error(4007)[0] == 507 and up.format_error(4002)[0] == 413
    assert up.format_error(400, "bad range", status=400) == (
        400,
        b'{"result":"ERROR","code":400,"message":"bad range"}',
    )


def test_ok_answer():
    answer = up.process_chunk_answer(200, up.format_ok(range="0-5", complete=True))
    assert answer.ok and answer.code == 0 and answer.complete and answer.held == RangeSet.parse("0-5")


def test_chunk_body_carries_range_and_fields_first():
    src = BytesSource(b"0123456789")
    enc = up.prepare_chunk("B-1", src, 3, 7, name="file", filename="n.bin", fields={"title": "x"})
    body = enc.read_all()
    assert len(body) == enc.content_length
    assert enc.headers["Content-Type"] == "multipart/form-data; boundary=B-1"
    assert body.index(b'name="title"') < body.index(b'name="file"')
    assert b'Content-Disposition: form-data; name="file"; filename="n.bin"; range="3-7/10"\r\n' in body
    assert b"\r\n\r\n3456\r\n--B-1--\r\n" in body


def test_plain_body_has_no_range():
    enc = up.prepare_plain("B-1", BytesSource(b"abc"), filename="a")
    body = enc.read_all()
    assert b"range=" not in body and b"\r\n\r\nabc\r\n" in body


def test_parse_query_request_rejects_other_forms():
    for bad in [
        b"server=x&action=query&boundary=B",
        b"server=uploader&action=upload&boundary=B",
        b"server=uploader&action=query",
        b"\xff",
        b"server=uploader&action=query&boundary=" + b"x" * 80,
    ]:
        with pytest.raises(ProtocolError):
            up.parse_query_request(bad)
    body = up.prepare_query("----a b")[1]
    assert parse_qs(body.decode())["boundary"] == ["----a b"]
    assert up.parse_query_request(body) == "----a b"


def test_error_text_says_each_thing_once():
    # Servers (ours included) often repeat the seed's phrase in their message.
    answer = up.process_chunk_answer(
        413, b'{"result":"ERROR","code":4002,"message":"File exceeded max_file_size: 300 > 200"}'
    )
    assert answer.text == "File exceeded max_file_size: 300 > 200"
    assert answer.describe() == "4002 File exceeded max_file_size: 300 > 200"
    answer = up.process_chunk_answer(507, b'{"result":"ERROR","code":4007,"message":"disk full"}')
    assert answer.text == "Upload failed: Cannot write to disk: disk full"
    assert up.process_chunk_answer(502, b"").text == "Bad Gateway"
    assert up.process_chunk_answer(200, b'{"result":"ERROR","code":9,"message":"odd"}').describe() == "9 odd"
