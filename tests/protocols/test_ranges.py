"""RangeSet against a model: the plain set of byte offsets it stands for."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbupload.protocols import ProtocolError, RangeSet
from nbupload.protocols.ranges import ByteRange, format_range_attr, parse_range_attr

spans = st.lists(
    st.tuples(st.integers(0, 200), st.integers(0, 60)).map(lambda t: (t[0], t[0] + t[1])), max_size=12
)


def model(pairs) -> set[int]:
    return {b for s, e in pairs for b in range(s, e)}


@given(spans)
def test_normalised_and_equal_to_model(pairs):
    rs = RangeSet(pairs)
    assert model(rs.spans) == model(pairs)
    # sorted, disjoint, non-adjacent, non-empty
    for (s1, e1), (s2, e2) in itertools.pairwise(rs.spans):
        assert s1 < e1 < s2 < e2
    assert all(s < e for s, e in rs.spans)
    assert rs.covered() == len(model(pairs))


@given(spans)
def test_format_parse_round_trip(pairs):
    rs = RangeSet(pairs)
    assert RangeSet.parse(str(rs)) == rs


@given(spans, spans)
def test_union_and_add(a, b):
    ra, rb = RangeSet(a), RangeSet(b)
    assert model((ra | rb).spans) == model(a) | model(b)
    for s, e in b:
        ra = ra.add(s, e)
    assert model(ra.spans) == model(a) | model(b)


@given(spans, st.integers(0, 300))
def test_missing_is_the_complement(pairs, total):
    rs = RangeSet(pairs)
    gaps = rs.missing(total)
    assert model(gaps.spans) == set(range(total)) - model(pairs)
    assert rs.union(gaps).covers(total)
    assert rs.covers(total) == (not gaps)
    assert model(rs.clip(total).spans) == model(pairs) & set(range(total))


@given(spans, st.integers(0, 260), st.integers(0, 40))
def test_contains(pairs, start, length):
    rs = RangeSet(pairs)
    assert rs.contains(start, start + length) == (set(range(start, start + length)) <= model(pairs))


@given(spans, st.integers(1, 17))
def test_pieces_cut_exactly(pairs, size):
    rs = RangeSet(pairs)
    pieces = list(rs.pieces(size))
    assert all(0 < len(p) <= size for p in pieces)
    assert RangeSet(pieces) == rs
    assert sum(len(p) for p in pieces) == rs.covered()


def test_prefix_and_end():
    rs = RangeSet.parse("0-10,20-30")
    assert rs.prefix() == 10 and rs.end() == 30
    assert RangeSet.parse("5-10").prefix() == 0
    assert RangeSet().end() == 0 and not RangeSet()


def test_parse_the_protocol_examples():
    assert RangeSet.parse("0-102400").covered() == 102400
    assert RangeSet.parse("0-102400,204800-307200").spans == ((0, 102400), (204800, 307200))
    assert RangeSet.parse("") == RangeSet() == RangeSet.parse(None) == RangeSet.parse("  ")
    assert RangeSet.parse("0-5, 5-9") == RangeSet.parse("0-9")


@pytest.mark.parametrize("bad", ["5", "a-b", "9-3", "-1-5", "1--5", "0-١٢", "0-99999999999999999999"])
def test_parse_rejects_malformed(bad):
    with pytest.raises(ProtocolError):
        RangeSet.parse(bad)


def test_range_attribute():
    assert format_range_attr(102400, 204800, 456770) == "102400-204800/456770"
    assert parse_range_attr("102400-204800/456770") == (102400, 204800, 456770)
    assert parse_range_attr("0-0/0") == (0, 0, 0)
    for bad in ["1-2", "2-1/5", "0-6/5", "x-1/2", "1-2/", "-1-2/3"]:
        with pytest.raises(ProtocolError):
            parse_range_attr(bad)
    with pytest.raises(ProtocolError):
        format_range_attr(0, 6, 5)
    with pytest.raises(ProtocolError):
        ByteRange(5, 4)


@given(st.text(max_size=40))
def test_parse_never_raises_anything_but_protocol_error(text):
    with contextlib.suppress(ProtocolError):
        RangeSet.parse(text)
    with contextlib.suppress(ProtocolError):
        parse_range_attr(text)
