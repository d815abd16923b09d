"""Regressions found by the hostile fuzzing in ``tests/hostile/``: inputs that used to raise
something other than ``ProtocolError`` (or were accepted when they are nonsense)."""

from __future__ import annotations

import json

import pytest

from nbupload.protocols import ProtocolError, TokenError, wcs
from nbupload.protocols import uploader as up
from nbupload.protocols.lenient import loads_lenient


@pytest.mark.parametrize("body", [b"[" * 30_000, b'{"a":' * 15_000])
def test_deep_nesting_is_a_protocol_error_not_recursion_error(body):
    with pytest.raises(ProtocolError):
        loads_lenient(body)
    assert not up.process_query_answer(200, body, "B").resumable
    assert not wcs.process_append_answer(500, {}, body).ok


@pytest.mark.parametrize("code", [b"Infinity", b"-Infinity", b"1e999"])
def test_infinite_error_code_is_no_code(code):
    answer = up.process_chunk_answer(500, b'{"result":"ERROR","code":' + code + b"}")
    assert not answer.ok and answer.code is None


@pytest.mark.parametrize("value", ["-5", "1_000", "\u0661\u0662", "+7", " 0x10 "])
def test_append_position_header_is_ascii_digits_only(value):
    answer = wcs.process_append_answer(409, {wcs.APPEND_POSITION_HEADER: value}, b"{}")
    assert answer.next_position is None
    assert wcs.process_append_answer(409, {wcs.APPEND_POSITION_HEADER: " 12 "}, b"{}").next_position == 12


@pytest.mark.parametrize(
    "policy",
    [
        {"scope": "b", "deadline": 9e15, "fsizeLimit": float("inf")},
        {"scope": "b", "deadline": "99999999999999", "overwrite": float("-inf")},
    ],
)
def test_signed_policy_with_infinite_numbers_is_a_token_error(policy):
    token = wcs.make_token("AK", "SK", json.dumps(policy))
    with pytest.raises(TokenError):
        wcs.verify_token(token, {"AK": "SK"}, 0)


def test_signed_deeply_nested_policy_is_a_token_error():
    token = wcs.make_token("AK", "SK", '{"scope":"b","deadline":1,"x":' + "[" * 20_000 + "]" * 20_000 + "}")
    with pytest.raises(TokenError):
        wcs.verify_token(token, {"AK": "SK"}, 0)
