"""The streaming encoder: exact lengths, bounded pieces, and a round trip through a real parser."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from python_multipart.multipart import MultipartParser, parse_options_header

from nbupload.protocols.multipart import (
    BytesSource,
    Field,
    FilePart,
    FileSource,
    MultipartEncoder,
    ShortReadError,
    new_boundary,
    quote_param,
)


def parse(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """Parse with python-multipart (the server's parser) into (disposition params, data)."""
    parts: list[tuple[dict[str, str], bytes]] = []
    state: dict = {}

    def on_header_field(data, start, end):
        state["field"] = state.get("field", b"") + data[start:end]

    def on_header_value(data, start, end):
        state["value"] = state.get("value", b"") + data[start:end]

    def on_header_end():
        state.setdefault("headers", {})[state.pop("field").lower()] = state.pop("value")

    def on_part_begin():
        state["headers"], state["data"] = {}, bytearray()

    def on_part_data(data, start, end):
        state["data"] += data[start:end]

    def on_part_end():
        _, params = parse_options_header(state["headers"][b"content-disposition"])
        parts.append(({k.decode(): v.decode() for k, v in params.items()}, bytes(state["data"])))

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
        "on_header_field": on_header_field, "on_header_value": on_header_value, "on_header_end": on_header_end,
    })
    parser.write(body)
    parser.finalize()
    return parts


names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=12)


@settings(max_examples=60)
@given(
    fields=st.lists(st.tuples(names, st.text(max_size=20)), max_size=3),
    data=st.binary(max_size=3000),
    cut=st.tuples(st.integers(0, 3000), st.integers(0, 3000)),
    piece=st.integers(1, 700),
    filename=names,
)
def test_round_trip_through_the_server_parser(fields, data, cut, piece, filename):
    start, end = sorted(min(c, len(data)) for c in cut)
    boundary = new_boundary()
    src = BytesSource(data)
    enc = MultipartEncoder(
        [*(Field(k, v) for k, v in fields),
         FilePart("file", filename, src, start, end - start, params={"range": f"{start}-{end}/{len(data)}"})],
        boundary, piece,
    )
    pieces = list(enc)
    assert all(isinstance(p, bytes) for p in pieces)
    assert max((len(p) for p in pieces), default=0) <= max(piece, 400)  # heads are small
    body = b"".join(pieces)
    assert len(body) == enc.content_length
    parsed = parse(body, boundary)
    assert len(parsed) == len(fields) + 1
    for (params, value), (k, v) in zip(parsed, fields):
        assert value == v.encode()
    params, value = parsed[-1]
    assert value == data[start:end]
    assert params["range"] == f"{start}-{end}/{len(data)}"
    expected_name = filename.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    assert params["filename"] == expected_name


def test_file_source_streams_with_pread(tmp_path):
    path = tmp_path / "f.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        src = FileSource(fd)
        assert src.size == len(data)
        enc = MultipartEncoder([FilePart("f", "f.bin", src, 1000, 2 * 1024 * 1024)], "b", 512 * 1024)
        pieces = list(enc)
        assert max(len(p) for p in pieces) == 512 * 1024
        assert parse(b"".join(pieces), "b")[0][1] == data[1000 : 1000 + 2 * 1024 * 1024]
    finally:
        os.close(fd)


def test_truncated_source_is_detected(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100)
    fd = os.open(path, os.O_RDONLY)
    try:
        enc = MultipartEncoder([FilePart("f", "f", FileSource(fd))], "b", 10)
        os.truncate(path, 50)
        with pytest.raises(ShortReadError, match="truncated or changed"):
            list(enc)
    finally:
        os.close(fd)


def test_slices_outside_the_source_are_refused():
    with pytest.raises(ValueError):
        MultipartEncoder([FilePart("f", "f", BytesSource(b"abc"), 2, 5)], "b")


def test_boundaries_are_random_and_valid():
    a, b = new_boundary(), new_boundary()
    assert a != b and len(a) <= 70 and len(a) - len("----nbupload") == 32
    with pytest.raises(ValueError):
        MultipartEncoder([], "bad\nboundary")


def test_quote_param_like_browsers():
    assert quote_param('a"b\r\nc') == '"a%22b%0D%0Ac"'


def test_encoder_can_be_iterated_twice_for_retries():
    enc = MultipartEncoder([Field("a", "1"), FilePart("f", "f", BytesSource(b"xyz"))], "b")
    assert enc.read_all() == enc.read_all()
