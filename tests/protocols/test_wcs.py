"""WCS tokens, etag and append answers, with the vectors of PROTOCOLS.md B1/B2."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbupload.protocols import ProtocolError, TokenError
from nbupload.protocols import wcs
from nbupload.protocols.multipart import BytesSource
from tests.support.fuzzing import examples

MiB = 1024 * 1024
NOW = 1_700_000_000_000


def test_sign_vector():
    assert "UMU:" + wcs.sign("key", "The quick brown fox jumps over the lazy dog") == (
        "UMU:ZGU3YzliODViOGI3OGFhNmJjOGE3YTM2ZjcwYTkwNzAxYzlkYjRkOQ=="
    )


def test_etag_vectors():
    assert wcs.etag_of(b"") == "Fto5o-5ea0sNMlW_75VgGJCv2AcJ"
    assert wcs.etag_of(b"UMUTech@qq.com") == "FpAEzHGOWdh-QAYhattxl1vqHLMw"


def reference_etag(data: bytes) -> str:
    blocks = [data[i : i + wcs.BLOCK_SIZE] for i in range(0, len(data), wcs.BLOCK_SIZE)] or [b""]
    if len(blocks) == 1:
        return base64.urlsafe_b64encode(b"\x16" + hashlib.sha1(blocks[0]).digest()).decode()
    joined = b"".join(hashlib.sha1(b).digest() for b in blocks)
    return base64.urlsafe_b64encode(b"\x96" + hashlib.sha1(joined).digest()).decode()


@pytest.mark.parametrize("size", [4 * MiB - 1, 4 * MiB, 4 * MiB + 1, 8 * MiB, 9 * MiB + 5])
def test_etag_block_boundaries(size):
    data = os.urandom(size)
    expected = reference_etag(data)
    assert wcs.etag_of(data) == expected
    assert wcs.etag_of(BytesSource(data), piece_size=1_000_003) == expected
    assert expected[0] == ("F" if size <= 4 * MiB else "l")  # 0x16 vs 0x96 prefix


@settings(max_examples=examples(0.125))  # 9 MiB hashed per example
@given(st.lists(st.integers(0, 3 * MiB), min_size=1, max_size=6))
def test_etag_streaming_any_split(cuts):
    data = os.urandom(9 * MiB)[: sum(cuts)]
    hasher = wcs.EtagHasher()
    pos = 0
    for n in cuts:
        hasher.update(memoryview(data)[pos : pos + n])
        pos += n
    assert hasher.size == len(data)
    assert hasher.etag() == reference_etag(data)


def policy(**kw) -> wcs.PutPolicy:
    return wcs.PutPolicy(**{"scope": "bucket", "deadline": NOW + 60_000, **kw})


def test_token_round_trip_and_layout():
    token = wcs.make_token("AK", "SK", policy(fsize_limit=100, return_body="name=$(fname)"))
    ak, sign, encoded = token.split(":")
    assert ak == "AK" and sign == wcs.sign("SK", encoded)
    assert json.loads(base64.urlsafe_b64decode(encoded)) == {
        "scope": "bucket",
        "deadline": str(NOW + 60_000),
        "fsizeLimit": 100,
        "returnBody": "name=$(fname)",
    }
    got = wcs.verify_token(token, {"AK": "SK"}, NOW)
    assert got.scope == "bucket" and got.fsize_limit == 100 and got.return_body == "name=$(fname)"


@pytest.mark.parametrize("deadline", [NOW - 1, str(NOW - 1)])
def test_expired_tokens_number_or_string(deadline):
    token = wcs.make_token("AK", "SK", json.dumps({"scope": "b", "deadline": deadline}))
    with pytest.raises(TokenError, match="expired"):
        wcs.verify_token(token, {"AK": "SK"}, NOW)
    token = wcs.make_token("AK", "SK", json.dumps({"scope": "b", "deadline": str(NOW + 5)}))
    assert wcs.verify_token(token, {"AK": "SK"}, NOW).deadline == NOW + 5


def test_forged_and_tampered_tokens():
    token = wcs.make_token("AK", "SK", policy())
    ak, sign, encoded = token.split(":")
    forged = wcs.make_token("AK", "not-the-key", policy())
    tampered = f"{ak}:{sign}:" + base64.urlsafe_b64encode(policy(scope="other").to_json().encode()).decode()
    for bad in [forged, tampered]:
        with pytest.raises(TokenError, match="signature") as info:
            wcs.verify_token(bad, {"AK": "SK"}, NOW)
        assert "SK" not in str(info.value).replace("AK", "")
    with pytest.raises(TokenError, match="unknown access key"):
        wcs.verify_token(token, {"OTHER": "SK"}, NOW)
    for garbage in ["", "a:b", "a:b:c:d", "::"]:
        with pytest.raises(TokenError, match="malformed"):
            wcs.verify_token(garbage, {"AK": "SK"}, NOW)
    signed_garbage = "AK:" + wcs.sign("SK", "bm90IGpzb24=") + ":bm90IGpzb24="
    with pytest.raises(TokenError, match="not valid"):
        wcs.verify_token(signed_garbage, {"AK": "SK"}, NOW)


def test_scope_resolution():
    assert wcs.resolve_object(policy(scope="b"), "k/x.log") == ("b", "k/x.log")
    assert wcs.resolve_object(policy(scope="b:k"), None) == ("b", "k")
    assert wcs.resolve_object(policy(scope="b:k"), "k") == ("b", "k")
    with pytest.raises(TokenError, match="does not cover"):
        wcs.resolve_object(policy(scope="b:k"), "other")
    with pytest.raises(ProtocolError, match="no key"):
        wcs.resolve_object(policy(scope="b"), None)


def test_redaction_hides_the_signature():
    token = wcs.make_token("AK", "SK", policy())
    assert wcs.redact_token(token) == "AK:***"
    assert token.split(":")[1] not in wcs.redact_token(token)


def test_append_request_shape():
    enc = wcs.prepare_append(
        "AK:s:p",
        BytesSource(b"hello"),
        1,
        3,
        key="k",
        mime="text/plain",
        deadline_days=2,
        variables={"who": "me"},
        boundary="b",
    )
    body = enc.read_all()
    order = [
        body.index(f'name="{n}"'.encode()) for n in ("token", "x:who", "key", "mimeType", "deadline", "file")
    ]
    assert order == sorted(order)
    assert b"\r\n\r\nell\r\n--b--\r\n" in body and len(body) == enc.content_length
    assert wcs.append_path(42) == "/append/42" and wcs.parse_append_path("/append/42") == 42
    for bad in ["/append/", "/append/-1", "/append/1x", "/other/1"]:
        with pytest.raises(ProtocolError):
            wcs.parse_append_path(bad)


def test_append_answers_round_trip():
    status, headers, body = wcs.format_append_success(10, "Fhash", [("name", "a.log")])
    answer = wcs.process_append_answer(status, headers, body)
    assert answer.ok and answer.next_position == 10 and answer.object_type == "Appendable"
    assert answer.hash == "Fhash" and answer.fields == {"name": "a.log", "hash": "Fhash"}
    status, headers, body = wcs.format_append_error(409, "position mismatch", next_position=7)
    answer = wcs.process_append_answer(status, list(headers.items()), body)
    assert not answer.ok and answer.next_position == 7 and answer.code == "409"
    assert answer.describe() == "HTTP 409: position mismatch"
    answer = wcs.process_append_answer(502, {}, b"<html>bad gateway</html>")
    assert not answer.ok and answer.next_position is None and "bad gateway" in answer.message


def test_replay_judgement_b5():
    ok = wcs.AppendAnswer(True, 200, next_position=15)
    landed = wcs.AppendAnswer(False, 409, next_position=15, object_type="Appendable")
    other = wcs.AppendAnswer(False, 409, next_position=30, object_type="Appendable")
    normal = wcs.AppendAnswer(False, 409, next_position=15, object_type="Normal")
    assert wcs.judge_replay(10, 5, ok) == wcs.ReplayVerdict(False, False, 15)
    assert wcs.judge_replay(10, 5, landed) == wcs.ReplayVerdict(True, False, 15)
    assert wcs.judge_replay(10, 5, other).conflict
    assert not wcs.judge_replay(10, 5, normal).landed
    assert wcs.judge_replay(10, 5, wcs.AppendAnswer(False, 503)) == wcs.ReplayVerdict(False, False, None)


def test_return_body_template():
    pairs = wcs.render_return_body(
        "name=$(fname)&size=$(fsize)&v=$(x:who)", {"fname": "a", "fsize": "3", "x:who": "me"}
    )
    assert pairs == [("name", "a"), ("size", "3"), ("v", "me")]


@given(st.binary(max_size=200), st.integers(100, 599))
def test_append_answer_parser_never_raises(body, status):
    wcs.process_append_answer(status, {"x-wcs-next-append-position": "zz"}, body)


@given(st.text(max_size=80))
def test_token_parser_only_raises_token_errors(text):
    try:
        wcs.verify_token(text, {"AK": "SK"}, NOW)
    except TokenError:
        pass


@pytest.mark.parametrize(
    "obj",
    [
        {"scope": "b", "deadline": "x"},
        {"scope": "", "deadline": 1},
        {"scope": "b", "deadline": NOW + 1, "overwrite": "yes"},
        {"scope": "b", "deadline": NOW + 1, "fsizeLimit": "big"},
        ["not", "an", "object"],
    ],
)
def test_signed_but_invalid_policies_are_token_errors(obj):
    token = wcs.make_token("AK", "SK", json.dumps(obj))
    with pytest.raises(TokenError):
        wcs.verify_token(token, {"AK": "SK"}, NOW)


@pytest.mark.parametrize("blocks,tail", [(1, 0), (1, 10), (2, 0), (2, 1), (3, 5)])
def test_etag_resumes_from_kept_block_digests(blocks, tail):
    data = os.urandom(blocks * wcs.BLOCK_SIZE + tail)
    whole = wcs.EtagHasher()
    whole.update(data)
    kept = whole.block_digests()
    assert len(kept) == blocks and kept[0] == hashlib.sha1(data[: wcs.BLOCK_SIZE]).digest()
    resumed = wcs.EtagHasher.from_blocks(kept[: blocks - 1] if not tail else kept)
    resumed.update(data[resumed.size :])
    assert resumed.size == len(data)
    assert resumed.etag() == whole.etag() == reference_etag(data)
    # Resuming after every block, with nothing more fed, is still right.
    assert wcs.EtagHasher.from_blocks(kept).etag() == reference_etag(data[: blocks * wcs.BLOCK_SIZE])
