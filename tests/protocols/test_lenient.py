from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbupload.protocols import ProtocolError
from nbupload.protocols.lenient import MAX_ANSWER_BYTES, loads_lenient


def test_strict_json():
    assert loads_lenient(b'{"result":"OK","code":0}') == {"result": "OK", "code": 0}


def test_javascript_literals_from_the_seed():
    assert loads_lenient(b'{result:"OK"}') == {"result": "OK"}
    assert loads_lenient("{  \n  result: 'OK',  \n  code: 0,  \n}") == {"result": "OK", "code": 0}


def test_trailing_garbage_is_dropped():
    # The seed's query answer example closes one brace too many.
    assert loads_lenient(b"{a:1}}") == {"a": 1}
    assert loads_lenient(b'{"a":"}"} trailing') == {"a": "}"}


def test_bom_and_whitespace():
    assert loads_lenient('\ufeff  {"a": 1}\n') == {"a": 1}


@pytest.mark.parametrize("bad", [b"", b"   ", b"<html>502 Bad Gateway</html>", b"{unclosed", b"\xff\xfe"])
def test_rejects_non_answers(bad):
    with pytest.raises(ProtocolError):
        loads_lenient(bad)


def test_rejects_huge_bodies():
    with pytest.raises(ProtocolError, match="too large"):
        loads_lenient(b" " * (MAX_ANSWER_BYTES + 1))


@given(st.binary(max_size=200))
def test_only_protocol_errors_escape(data):
    try:
        loads_lenient(data)
    except ProtocolError:
        pass
