"""The streaming encoder: exact lengths, bounded pieces, and a round trip through the server's parser.

Names go through :func:`quote_param` and come back through the reference server's
:class:`~nbupload.server.parts.PartStream` exactly, whatever they hold. Each ``@example`` is a
name that broke a parser once (see docs/protocols.md, "Names in Content-Disposition").
"""

from __future__ import annotations

import os

import pytest
from hypothesis import example, given, settings
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
    unquote_param,
)
from nbupload.server.parts import DATA, END, HEAD, PartHead, PartStream
from tests.support.fuzzing import examples


def parse(body: bytes, boundary: str, piece: int = 65536) -> list[tuple[PartHead, bytes]]:
    """Parse as the reference server does (python-multipart scanning, our disposition parser),
    fed in ``piece``-byte slices, into (part head, data)."""
    stream = PartStream(boundary)
    parts: list[tuple[PartHead, bytes]] = []
    head, data = None, bytearray()
    for i in range(0, len(body), piece):
        for kind, value in stream.feed(body[i : i + piece]):
            if kind == HEAD:
                head, data = value, bytearray()
            elif kind == DATA:
                data += value
            else:
                assert kind == END and head is not None
                parts.append((head, bytes(data)))
    assert stream.finished
    return parts


def parse_plain_python_multipart(body: bytes, boundary: str) -> list[dict[str, str]]:
    """The disposition parameters as a server built on python-multipart alone reads them
    (``parse_options_header``: backslash escapes in quoted strings, no percent-decoding)."""
    heads: list[dict[str, str]] = []
    state: dict = {}

    def on_header_field(data, start, end):
        state["field"] = state.get("field", b"") + data[start:end]

    def on_header_value(data, start, end):
        state["value"] = state.get("value", b"") + data[start:end]

    def on_header_end():
        state.setdefault("headers", {})[state.pop("field").lower()] = state.pop("value")

    def on_part_begin():
        state["headers"] = {}

    def on_part_end():
        _, params = parse_options_header(state["headers"][b"content-disposition"])
        heads.append({k.decode(): v.decode("utf-8") for k, v in params.items()})

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
        },
    )
    parser.write(body)
    parser.finalize()
    return heads


#: Any text a file or field name can hold: every code point but lone surrogates (not UTF-8).
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


def name_examples(test):
    """The names that broke a parser once, as ``@example``s of a ``(name, filename)`` test."""
    cases = [
        ("file", "\\"),  # "a\" read as an escaped quote: range swallowed, a 300 kB upload stored as "300000"
        ("file", "weird\\"),
        ("file", '\\"'),  # backslash then quote: "%5C%22", never \"
        ("file", '"'),
        ("file", 'a"; range="0-1/1'),  # a quote must not end the value and inject a parameter
        ("file", "a; range=0-1/1"),  # nor a semicolon
        ("file", "%22"),  # a literal %22 must not come back as a quote
        ("file", "%2522"),
        ("file", "%5c%0A%0d%25"),
        ("file", "%"),
        ("file", "50% off.csv"),  # a % that is no escape goes raw, as browsers send it
        ("file", "\r\n"),
        ("file", "a\r\nContent-Type: text/html"),  # header injection
        ("file", "C:\\x"),  # python-multipart's IE6 rule would keep only "x"
        ("file", "\\\\server\\share"),
        ("file", "x*"),
        ("file", "\t tab"),
        ("file", "é报告.xlsx"),
        ("file", "\x00"),
        ("fi\\eld", "data.bin"),
        ('f"ield', "data.bin"),
        ("f;x=1", "data.bin"),
        ("%22", "data.bin"),
    ]
    for name, filename in reversed(cases):
        test = example(name=name, filename=filename)(test)
    return test


@name_examples
@settings(max_examples=examples(1.0))
@given(name=names, filename=names)
def test_names_round_trip_through_the_server_parser(name, filename):
    boundary = new_boundary()
    enc = MultipartEncoder(
        [Field(name, "v"), FilePart(name, filename, BytesSource(b"12345"), 1, 3, params={"range": "1-4/5"})],
        boundary,
    )
    (field, value), (part, data) = parse(enc.read_all(), boundary)
    assert (field.name, value, field.is_file) == (name, b"v", False)
    assert part.params == {"name": name, "filename": filename, "range": "1-4/5"}
    assert data == b"234"


@name_examples
@settings(max_examples=examples(1.0))
@given(name=names, filename=names)
def test_python_multipart_alone_never_loses_a_parameter(name, filename):
    """A server built on python-multipart alone (FastAPI, Starlette) reads every parameter of
    ours, in order, and only has to undo the percent escapes to get the names back."""
    boundary = new_boundary()
    enc = MultipartEncoder([FilePart(name, filename, BytesSource(b"x"), params={"range": "0-1/1"})], boundary)
    (params,) = parse_plain_python_multipart(enc.read_all(), boundary)
    assert params["range"] == "0-1/1"
    assert unquote_param(params["name"]) == name and unquote_param(params["filename"]) == filename


@settings(max_examples=examples(1.0))
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=20))
@example("\\")
@example("%2522")
@example('%"')
def test_quote_param_is_unambiguous_and_safe_for_any_quoted_string_reader(value):
    quoted = quote_param(value)
    inner = quoted[1:-1]
    assert quoted == f'"{inner}"' and not set(inner) & set('"\\\r\n')
    assert unquote_param(inner) == value
    if "%" not in value:  # what browsers send, plus %5C for a backslash
        assert inner == value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A").replace(
            "\\", "%5C"
        )


@settings(max_examples=examples(0.5))
@given(
    fields=st.lists(st.tuples(names, st.text(max_size=20)), max_size=3),
    data=st.binary(max_size=3000),
    cut=st.tuples(st.integers(0, 3000), st.integers(0, 3000)),
    piece=st.integers(1, 700),
    filename=names,
)
@example(fields=[], data=b"", cut=(0, 0), piece=1, filename="\\")
def test_round_trip_through_the_server_parser(fields, data, cut, piece, filename):
    start, end = sorted(min(c, len(data)) for c in cut)
    boundary = new_boundary()
    src = BytesSource(data)
    enc = MultipartEncoder(
        [
            *(Field(k, v) for k, v in fields),
            FilePart(
                "file", filename, src, start, end - start, params={"range": f"{start}-{end}/{len(data)}"}
            ),
        ],
        boundary,
        piece,
    )
    pieces = list(enc)
    assert all(isinstance(p, bytes) for p in pieces)
    assert max((len(p) for p in pieces), default=0) <= max(piece, 400)  # heads are small
    body = b"".join(pieces)
    assert len(body) == enc.content_length
    parsed = parse(body, boundary, piece)
    assert len(parsed) == len(fields) + 1
    for (head, value), (k, v) in zip(parsed, fields):
        assert (head.name, value) == (k, v.encode())
    head, value = parsed[-1]
    assert value == data[start:end]
    assert head.params == {"name": "file", "filename": filename, "range": f"{start}-{end}/{len(data)}"}


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


def test_quote_param_like_browsers_except_backslashes():
    assert quote_param('a"b\r\nc') == '"a%22b%0D%0Ac"'
    assert quote_param("weird\\") == '"weird%5C"'
    assert quote_param("100% %22") == '"100% %2522"'


def test_encoder_can_be_iterated_twice_for_retries():
    enc = MultipartEncoder([Field("a", "1"), FilePart("f", "f", BytesSource(b"xyz"))], "b")
    assert enc.read_all() == enc.read_all()


def test_a_name_that_is_not_text_goes_with_replacement_characters():
    """``os.fsdecode`` leaves a file name's undecodable bytes as lone surrogates, which UTF-8
    cannot carry: they go as U+FFFD (as browsers replace what they cannot encode), the data intact."""
    boundary = new_boundary()
    enc = MultipartEncoder([FilePart("file", "bad\udcff.bin", BytesSource(b"xyz"))], boundary)
    ((head, data),) = parse(enc.read_all(), boundary)
    assert head.filename == "bad\ufffd.bin" and data == b"xyz"
