"""Property-based fuzzing of every parser in the protocols layer, both directions.

``tests/protocols/`` holds the examples and a first "only ProtocolError escapes" check on
short random text. This module goes further, with inputs a hostile peer would send: deep
nesting, ``Infinity`` and huge numbers inside otherwise valid answers, non-ASCII digits,
every JSON value in every field, answers written as JavaScript literals, and round trips
from each ``format_*`` through its parser. Each property states what the parser must
*return*, not only what it must not raise.
"""

from __future__ import annotations

import base64
import json
import re
import string

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from nbupload.protocols import ProtocolError, RangeSet, TokenError
from nbupload.protocols import uploader as up
from nbupload.protocols import wcs
from nbupload.protocols.lenient import MAX_ANSWER_BYTES, loads_lenient
from nbupload.protocols.multipart import _BCHARS, check_boundary, quote_param
from nbupload.protocols.ranges import format_range_attr, parse_range_attr
from nbupload.server.parts import parse_disposition
from tests.support.fuzzing import examples

FUZZ = settings(max_examples=examples(0.75), suppress_health_check=[HealthCheck.too_slow])
NOW = 1_700_000_000_000

# --------------------------------------------------------------------------- strategies
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)  # includes +-inf: Python's json accepts and emits Infinity
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=6)

#: Bodies that blow naive parsers up: deep nesting (RecursionError), non-finite numbers
#: (OverflowError on int()), enormous integers, lone surrogates, NULs.
nasty_texts = st.one_of(
    st.integers(900, 30_000).map(lambda n: "[" * n),
    st.integers(900, 15_000).map(lambda n: "{a:" * n),
    st.integers(900, 15_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(900, 20_000).map(lambda n: "[" * n + "]" * n),
    st.sampled_from(["Infinity", "-Infinity", "NaN", "1e999", "-1e999", "9" * 5000, "\x00", "\ud800"]).map(
        lambda v: '{"result":"ERROR","code":%s,"range":%s,"complete":%s}' % (v, json.dumps(v), v)
    ),
    st.text(alphabet="{}[]\"':,\\ \n0123456789aeInfityNa-.", max_size=300),
)
bodies = st.one_of(
    st.binary(max_size=300),
    nasty_texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
)

boundaries = st.text(alphabet="".join(sorted(_BCHARS)), min_size=1, max_size=70).filter(
    lambda b: not b.endswith(" ")
)
names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=16)
range_sets = st.lists(
    st.tuples(st.integers(0, 10**12), st.integers(0, 10**9)).map(lambda t: (t[0], t[0] + t[1])), max_size=6
).map(RangeSet)
statuses = st.integers(100, 599)

_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


def js_literal(value, depth_hint: int = 0) -> str:
    """Render ``value`` the way the seed's servers write answers: a JavaScript literal
    with unquoted keys where possible and single-quoted strings."""
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            key = (
                k
                if _IDENT.fullmatch(k) and k not in {"true", "false", "null", "Infinity", "NaN"}
                else js_string(k)
            )
            items.append(f"{key}: {js_literal(v)}")
        return "{ " + ", ".join(items) + (", }" if items and depth_hint % 2 else " }")
    if isinstance(value, list):
        return "[" + ", ".join(js_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return js_string(value)
    return json.dumps(value)


def js_string(text: str) -> str:
    # Raw UTF-8, not \u escapes: json5 does not join escaped surrogate pairs (known quirk).
    inner = json.dumps(text, ensure_ascii=False)[1:-1].replace('\\"', '"').replace("'", "\\'")
    return f"'{inner}'"


# --------------------------------------------------------------------------- lenient
@FUZZ
@given(json_values)
def test_lenient_reads_strict_json_exactly(value):
    assert loads_lenient(json.dumps(value).encode()) == value
    assert loads_lenient(json.dumps(value, ensure_ascii=False)) == value


@FUZZ
@given(json_objects, st.integers(0, 3))
def test_lenient_reads_javascript_literals(obj, hint):
    assert loads_lenient(js_literal(obj, hint).encode()) == obj


@FUZZ
@given(json_objects, st.text(max_size=30))
def test_lenient_drops_garbage_after_the_first_object(obj, garbage):
    # The seed's own query answer closes one brace too many.
    assert loads_lenient(js_literal(obj) + "}" + garbage) == obj


@FUZZ
@given(json_values, st.sampled_from(["\ufeff", " ", "\n\t", "\ufeff\r\n "]))
def test_lenient_ignores_bom_and_whitespace(value, pad):
    assert loads_lenient(pad + json.dumps(value) + pad.replace("\ufeff", "")) == value


@FUZZ
@given(bodies)
@example(b"[" * 30_000)  # json.loads raises RecursionError, not ValueError
@example(b"\xef\xbb\xbf" + b"{" * 20_000)
def test_lenient_raises_only_protocol_error(body):
    try:
        loads_lenient(body)
    except ProtocolError:
        pass


def test_lenient_size_cap_applies_to_text_and_bytes():
    for big in (b"{" * (MAX_ANSWER_BYTES + 1), "{" * (MAX_ANSWER_BYTES + 1)):
        try:
            loads_lenient(big)
        except ProtocolError as exc:
            assert "too large" in str(exc)
        else:  # pragma: no cover - the assertion is the test
            raise AssertionError("an oversized answer was parsed")


# --------------------------------------------------------------------------- uploader, client side
@FUZZ
@given(statuses, bodies, boundaries)
@example(200, b"[" * 30_000, "B")
@example(200, b'{"support":true,"boundary":"B","file":' + b"[" * 20_000 + b"]" * 20_000 + b"}", "B")
def test_query_answer_never_raises_and_is_consistent(status, body, boundary):
    answer = up.process_query_answer(status, body, boundary)
    assert isinstance(answer, up.QueryAnswer)
    if answer.resumable:
        assert status == 200
        assert all(isinstance(r, RangeSet) for r in answer.held.values())
        assert all(isinstance(n, str) for n in answer.data)
    else:
        assert answer.reason  # the fallback to plain mode is always explained


@FUZZ
@given(
    boundaries, st.dictionaries(names, range_sets, max_size=4), st.lists(names, max_size=3), st.integers(0, 3)
)
def test_query_answer_round_trip_json_and_js(boundary, files, data, nesting):
    body = up.format_query_answer(boundary, files, data)
    answer = up.process_query_answer(200, body, boundary)
    assert answer.resumable, answer.reason
    assert dict(answer.held) == files
    assert answer.data == tuple(data)
    # The same answer as a JavaScript literal, the file list nested too deep, one brace too many.
    obj = json.loads(body)
    for _ in range(nesting):
        obj["file"] = [obj["file"]]
    js = js_literal(obj, nesting) + "}"
    again = up.process_query_answer(200, js, boundary)
    assert again.resumable, again.reason
    assert dict(again.held) == files


@FUZZ
@given(boundaries, boundaries, statuses, st.dictionaries(names, range_sets, max_size=3))
def test_query_answer_for_another_session_or_status_means_plain(boundary, other, status, files):
    body = up.format_query_answer(boundary, files)
    if status != 200:
        assert not up.process_query_answer(status, body, boundary).resumable
    assume(other != boundary)
    assert not up.process_query_answer(200, body, other).resumable


@FUZZ
@given(st.sampled_from(["support", "boundary", "file", "range"]), json_values)
def test_query_answer_any_value_in_any_field(field, value):
    obj = {"support": True, "boundary": "B", "file": [{"name": "f", "range": "0-10"}]}
    if field == "range":
        obj["file"][0]["range"] = value
    else:
        obj[field] = value
    answer = up.process_query_answer(200, json.dumps(obj).encode(), "B")
    if answer.resumable:
        assert isinstance(answer.ranges_for("f"), RangeSet)


@FUZZ
@given(statuses, bodies)
@example(500, b'{"result":"ERROR","code":Infinity}')
@example(200, b'{"result":"OK","code":-Infinity,"range":Infinity}')
@example(200, b'{"result":"OK","code":1e999}')
def test_chunk_answer_never_raises_and_follows_the_runtime_rule(status, body):
    answer = up.process_chunk_answer(status, body)
    assert answer.code is None or isinstance(answer.code, int)
    if not 200 <= status < 300:
        assert not answer.ok
    assert isinstance(answer.describe(), str)
    assert answer.held is None or isinstance(answer.held, RangeSet)


@FUZZ
@given(
    statuses, json_objects, st.sampled_from(["OK", "ok", " Ok ", "ERROR", "error", "", "other"]), json_values
)
def test_chunk_answer_fields_of_any_type(status, obj, result, code):
    obj = {**obj, "result": result, "code": code}
    answer = up.process_chunk_answer(status, json.dumps(obj).encode())
    expect_ok = 200 <= status < 300 and result.strip().upper() != "ERROR"
    assert answer.ok is expect_ok
    if not answer.ok:
        assert answer.code != 0


@FUZZ
@given(st.sampled_from(sorted(set(up.ERROR_MESSAGES) - {0})), st.one_of(st.none(), st.text(max_size=40)))
def test_error_answers_round_trip(code, message):
    status, body = up.format_error(code, message)
    answer = up.process_chunk_answer(status, body)
    assert (answer.ok, answer.code, answer.status) == (False, code, status)
    assert answer.message == (message or up.ERROR_MESSAGES[code])
    assert str(code) in answer.describe()


@FUZZ
@given(
    range_sets,
    st.booleans(),
    st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=6), scalars, max_size=3),
)
def test_ok_answers_round_trip(held, complete, extra):
    extra = {k: v for k, v in extra.items() if k not in {"result", "code", "message", "range", "complete"}}
    answer = up.process_chunk_answer(200, up.format_ok(range=str(held), complete=complete, **extra))
    assert answer.ok and answer.held == held and answer.complete is complete
    assert dict(answer.extra) == extra


# --------------------------------------------------------------------------- WCS, client side
headers_lists = st.lists(
    st.tuples(
        st.sampled_from(
            [wcs.APPEND_POSITION_HEADER, "X-WCS-Next-Append-Position", wcs.OBJECT_TYPE_HEADER, "x-other"]
        ),
        st.one_of(
            st.text(max_size=25),
            st.integers(-(2**70), 2**70).map(str),
            st.sampled_from(["-5", " 12 ", "1_000", "\u0661\u0662", "+7", "0x10", "9" * 5000, "١"]),
        ),
    ),
    max_size=4,
)


@FUZZ
@given(statuses, headers_lists, bodies)
@example(200, [(wcs.APPEND_POSITION_HEADER, "-5")], b"")
@example(409, [(wcs.APPEND_POSITION_HEADER, "\u0661\u0662")], b"{}")
@example(409, [(wcs.APPEND_POSITION_HEADER, "1_000")], b"{}")
@example(500, [], b"[" * 30_000)
def test_append_answer_never_raises_and_positions_are_sane(status, headers, body):
    answer = wcs.process_append_answer(status, headers, body)
    assert answer.ok == (200 <= status < 300)
    # A position is a byte count: never negative, and only from plain ASCII digits.
    if answer.next_position is not None:
        assert answer.next_position >= 0
        raw = [v for k, v in headers if k.lower() == wcs.APPEND_POSITION_HEADER][0]
        assert raw.strip().isascii() and raw.strip().isdigit()
    verdict = wcs.judge_replay(100, 10, answer)
    assert not (verdict.landed and verdict.conflict)
    if verdict.landed:
        assert answer.status == 409 and answer.next_position == 110


@FUZZ
@given(
    st.integers(0, 2**63),
    st.text(string.ascii_letters + string.digits + "-_=", max_size=30),
    st.lists(
        st.tuples(
            st.text(string.ascii_letters, min_size=1, max_size=6),
            st.text(string.ascii_letters + string.digits + ". /", max_size=12),
        ),
        max_size=3,
    ),
)
def test_append_success_round_trip(position, etag, fields):
    status, headers, body = wcs.format_append_success(position, etag, fields)
    answer = wcs.process_append_answer(status, headers, body)
    assert answer.ok and answer.next_position == position and answer.object_type == "Appendable"
    assert answer.hash == etag
    assert {k: v for k, v in answer.fields.items() if k != "hash"} == {k: v for k, v in fields if k != "hash"}


@FUZZ
@given(
    st.sampled_from([400, 401, 409, 413, 500, 503]),
    st.text(max_size=60),
    st.one_of(st.none(), st.integers(0, 2**63)),
    st.sampled_from([None, "Normal", "Appendable"]),
)
def test_append_error_round_trip(status, message, next_position, object_type):
    answer = wcs.process_append_answer(
        *wcs.format_append_error(status, message, next_position=next_position, object_type=object_type)
    )
    assert not answer.ok and answer.status == status
    assert (answer.message, answer.next_position, answer.object_type) == (message, next_position, object_type)


# --------------------------------------------------------------------------- uploader, server side
@FUZZ
@given(boundaries)
def test_query_request_round_trip(boundary):
    assert up.parse_query_request(up.prepare_query(boundary)[1]) == boundary


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=100).map(
            lambda t: ("server=uploader&action=query&boundary=" + t).encode("utf-8", "surrogatepass")
        ),
        st.integers(0, 40).map(lambda n: b"server=uploader&action=query&boundary=B" + b"&x=1" * n),
    )
)
@example(b"server=uploader&action=query&boundary=%0D%0AX-Injected:%201")
@example(b"server=uploader&action=query&boundary=..%2F..%2Fetc")
@example(b"server=uploader&action=query&boundary=%FF%FE")
def test_query_request_returns_only_safe_boundaries(body):
    try:
        boundary = up.parse_query_request(body)
    except ProtocolError:
        return
    # Whatever it accepts is a valid RFC 2046 boundary: no CR/LF or backslash, at most 70
    # chars. It may hold '/' and '.', so a server must never use it as a path as it is.
    assert check_boundary(boundary) == boundary
    assert "\r" not in boundary and "\n" not in boundary and "\\" not in boundary


@FUZZ
@given(st.integers(0, 10**18), st.integers(0, 10**18), st.integers(0, 10**18))
def test_range_attribute_round_trip(a, b, c):
    start, end, total = sorted((a, b, c))
    assert parse_range_attr(format_range_attr(start, end, total)) == (start, end, total)


range_texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789-/, +_\u0661\u0662\uff11\t", max_size=40),
    st.tuples(
        st.integers(-(10**20), 10**20), st.integers(-(10**20), 10**20), st.integers(-(10**20), 10**20)
    ).map(lambda t: f"{t[0]}-{t[1]}/{t[2]}"),
)


@FUZZ
@given(range_texts)
@example("-5-10/20")
@example("10-5/20")
@example("0-30/20")
@example("\uff11-\uff12/\uff13")  # full-width digits
@example("1_0-2_0/3_0")
@example("99999999999999999999-1/2")
def test_range_attribute_accepts_only_sane_ranges(text):
    try:
        start, end, total = parse_range_attr(text)
    except ProtocolError:
        return
    assert 0 <= start <= end <= total
    assert re.fullmatch(r"\s*[0-9]+\s*-\s*[0-9]+\s*/\s*[0-9]+\s*", text), text


@FUZZ
@given(range_texts)
def test_rangeset_parse_is_canonical(text):
    try:
        rs = RangeSet.parse(text)
    except ProtocolError:
        return
    assert RangeSet.parse(str(rs)) == rs
    assert all(0 <= s < e for s, e in rs.spans)


@FUZZ
@given(
    st.one_of(
        st.text(max_size=30).map(lambda t: "/append/" + t),
        st.text(max_size=30),
        st.integers(-(10**20), 10**20).map(lambda n: f"/append/{n}"),
    )
)
@example("/append/\u0661")
@example("/append/1/../../etc")
@example("/append/%31")
def test_append_path_accepts_only_positions(path):
    try:
        position = wcs.parse_append_path(path)
    except ProtocolError:
        return
    assert position >= 0
    assert wcs.parse_append_path(wcs.append_path(position)) == position
    assert re.fullmatch(r"/append/[0-9]+/*", path), path


# --------------------------------------------------------------------------- tokens, server side
access_keys = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters=":"), min_size=1, max_size=12
).filter(lambda s: s.strip() == s)
secret_keys = st.text(string.ascii_letters + string.digits, min_size=16, max_size=40)
scopes = st.tuples(
    st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=10),
    st.one_of(st.none(), st.text(min_size=1, max_size=20)),
).map(lambda t: t[0] if t[1] is None else f"{t[0]}:{t[1]}")


def _policy_json(scope: str, deadline, **extra) -> str:
    return json.dumps({"scope": scope, "deadline": deadline, **extra})


@FUZZ
@given(access_keys, secret_keys, scopes, st.integers(1, 10**9), st.booleans())
def test_token_round_trip(ak, sk, scope, ahead, as_string):
    deadline = NOW + ahead
    token = wcs.make_token(ak, sk, _policy_json(scope, str(deadline) if as_string else deadline))
    assert wcs.parse_token(token)[0] == ak
    policy = wcs.verify_token(token, {ak: sk}, NOW)
    assert (policy.scope, policy.deadline) == (scope, deadline)


@FUZZ
@given(access_keys, secret_keys, scopes, st.data())
def test_any_single_character_change_is_refused(ak, sk, scope, data):
    token = wcs.make_token(ak, sk, _policy_json(scope, NOW + 60_000))
    first = len(ak) + 1  # mutate the sign or the policy, not the access key
    index = data.draw(st.integers(first, len(token) - 1))
    replacement = data.draw(st.sampled_from(string.ascii_letters + string.digits + "-_=+/ "))
    assume(token[index] != replacement and token[index] != ":")
    forged = token[:index] + replacement + token[index + 1 :]
    try:
        wcs.verify_token(forged, {ak: sk}, NOW)
    except TokenError as exc:
        message = str(exc)
        assert sk not in message
        assert wcs.parse_token(token)[1] not in message  # the genuine signature never leaks
    else:  # pragma: no cover - the assertion is the test
        raise AssertionError(f"forged token accepted: {forged!r}")


@FUZZ
@given(secret_keys, secret_keys, scopes)
def test_token_for_another_access_key_or_secret_is_refused(sk1, sk2, scope):
    assume(sk1 != sk2)
    creds = {"AK1": sk1, "AK2": sk2}
    policy = _policy_json(scope, NOW + 60_000)
    good = wcs.make_token("AK1", sk1, policy)
    _, sign, encoded = good.split(":")
    for bad in (
        f"AK2:{sign}:{encoded}",
        wcs.make_token("AK1", sk2, policy),
        wcs.make_token("AK3", sk1, policy),
    ):
        try:
            wcs.verify_token(bad, creds, NOW)
        except TokenError as exc:
            assert sk1 not in str(exc) and sk2 not in str(exc) and sign not in str(exc)
        else:  # pragma: no cover
            raise AssertionError("token accepted under the wrong access key")


@FUZZ
@given(
    secret_keys, scopes, st.integers(1, 10**12), st.sampled_from(["number", "string", "padded", "seconds"])
)
def test_expired_deadlines_in_every_form(sk, scope, ago, form):
    deadline = NOW - ago
    value = {"number": deadline, "string": str(deadline), "padded": f" {deadline} ", "seconds": NOW // 1000}[
        form
    ]
    token = wcs.make_token("AK", sk, _policy_json(scope, value))
    try:
        wcs.verify_token(token, {"AK": sk}, NOW)
    except TokenError as exc:
        assert "expired" in str(exc) and sk not in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expired token accepted")


@FUZZ
@given(json_values, json_values, json_values, json_values)
@example(NOW + 1, float("inf"), None, None)
@example(NOW + 1, 0, float("-inf"), None)
@example(float("inf"), 0, None, None)
@example(NOW + 1, 0, None, [[[[[[[[]]]]]]]])
def test_signed_policies_of_any_shape_give_a_policy_or_token_error(deadline, fsize, overwrite, extra):
    obj = {"scope": "b:k", "deadline": deadline, "fsizeLimit": fsize, "overwrite": overwrite, "extra": extra}
    token = wcs.make_token("AK", "S" * 20, json.dumps(obj))
    try:
        policy = wcs.verify_token(token, {"AK": "S" * 20}, 0)
    except TokenError:
        return
    assert isinstance(policy.deadline, int) and policy.deadline >= 0
    assert isinstance(policy.fsize_limit, int) and policy.fsize_limit >= 0


def test_signed_but_absurdly_nested_policy_is_a_token_error():
    token = wcs.make_token(
        "AK", "S" * 20, '{"scope":"b","deadline":1,"x":' + "[" * 20_000 + "]" * 20_000 + "}"
    )
    try:
        wcs.verify_token(token, {"AK": "S" * 20}, 0)
    except TokenError:
        pass


@FUZZ
@given(st.text(max_size=200))
@example("AK:" + "A" * 10_000 + ":" + base64.urlsafe_b64encode(b"[" * 5000).decode())
def test_parse_token_splits_into_three_nonempty_parts(text):
    try:
        parts = wcs.parse_token(text)
    except TokenError:
        return
    assert len(parts) == 3 and all(parts) and not any(":" in p for p in parts)


@FUZZ
@given(scopes, st.one_of(st.none(), st.text(max_size=30)))
def test_scope_resolution_never_escapes_the_scope(scope, key):
    policy = wcs.PutPolicy(scope=scope, deadline=NOW)
    try:
        bucket, resolved = wcs.resolve_object(policy, key)
    except ProtocolError:  # TokenError is a ProtocolError
        return
    assert bucket == scope.partition(":")[0]
    if ":" in scope:
        assert resolved == scope.partition(":")[2]
    else:
        assert resolved == key


# --------------------------------------------------------------------------- engine: Retry-After
@FUZZ
@given(
    st.one_of(
        st.none(),
        st.text(max_size=40),
        st.integers(-(10**30), 10**30).map(str),
        st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")),
    )
)
@example("\u00b2")  # superscript two: str.isdigit() is true, float() refuses it
@example("\u0663")
@example("9" * 400)
@example("Fri, 31 Dec 9999 23:59:59 GMT")
def test_retry_after_header_never_raises(value):
    from nbupload.engine.retry import parse_retry_after

    delay = parse_retry_after(value, now=1_700_000_000.0)
    assert delay is None or delay >= 0


# --------------------------------------------------------------------------- Content-Disposition
dispositions = st.one_of(
    st.binary(max_size=200),
    st.text(alphabet='form-dat;="\\ \t%250DAa5Cc*', max_size=80).map(lambda t: ("form-data;" + t).encode()),
    st.lists(
        st.tuples(st.sampled_from(["name", "filename", "range", "x"]), st.text(max_size=12)), max_size=4
    ).map(lambda ps: ("form-data" + "".join(f'; {k}="{v}"' for k, v in ps)).encode("utf-8", "surrogatepass")),
)


@FUZZ
@given(dispositions)
@example(b'form-data; name="file"; filename="weird\\"; range="0-5/10"')
@example(b'form-data; name="file"; filename="a\\"b"; range="0-5/10"')
@example(b'form-data; name="file"; filename="a')
@example(b"form-data; =x")
def test_parse_disposition_reads_exactly_or_refuses(raw):
    """Only ProtocolError escapes, and what it reads, written again by the client's encoder,
    reads back the same: no parameter is ever half-read into another."""
    try:
        kind, params = parse_disposition(raw)
    except ProtocolError:
        return
    assert isinstance(kind, str) and all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())
    again = kind + "".join(f"; {k}={quote_param(v)}" for k, v in params.items())
    assert parse_disposition(again.encode("utf-8", "surrogatepass")) == (kind, params)
