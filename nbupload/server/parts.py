"""A streaming ``multipart/form-data`` reader: body pieces in, part events out.

python-multipart's :class:`MultipartParser` does the scanning (``bytes.find`` for the
boundary, no per-byte Python work on part data); this module turns its callbacks into a
list of events per piece fed, so the caller can ``await`` its disk writes between events.
Part data arrive as ``memoryview`` slices of the piece just fed: no copies, valid until the
next :meth:`PartStream.feed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..protocols.errors import ProtocolError
from ..protocols.multipart import check_boundary, unquote_param

__all__ = ["DATA", "END", "HEAD", "PartHead", "PartStream", "multipart_boundary", "parse_disposition"]

HEAD, DATA, END = 0, 1, 2
MAX_PARTS = 1000
#: Disposition types accepted for form parts: the seed's ``attachments`` as well.
DISPOSITION_TYPES = frozenset({"form-data", "attachments", "attachment"})
_OWS = " \t"


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


@dataclass
class PartHead:
    """One part's headers: disposition type, its parameters (decoded), content type."""

    disposition: str
    params: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None

    @property
    def name(self) -> str | None:
        return self.params.get("name")

    @property
    def filename(self) -> str | None:
        return self.params.get("filename")

    @property
    def is_file(self) -> bool:
        return "filename" in self.params


def _skip_ows(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _OWS:
        pos += 1
    return pos


def _split_params(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``type; name="value"; name=token`` -> the type and the raw ``(name, value)`` pairs.

    A quoted string runs to the next ``"``: a backslash in it is an ordinary character, as in
    what browsers and curl send (they write ``"`` as ``%22`` and never escape a backslash), so
    ``filename="a\\"`` is the name ``a\\``. Anything that does not fit the grammar (an
    unterminated string, text after a value, a parameter without ``=``) is a
    :class:`ProtocolError`: guessing would risk reading a ``range`` into a filename.
    """
    semi = text.find(";")
    kind = (text if semi < 0 else text[:semi]).strip(_OWS)
    params: list[tuple[str, str]] = []
    pos = len(text) if semi < 0 else semi
    while pos < len(text):  # text[pos] == ";"
        pos = _skip_ows(text, pos + 1)
        if pos == len(text):
            break  # a trailing ";"
        eq = text.find("=", pos)
        name = text[pos:eq].strip(_OWS) if eq >= 0 else ""
        if eq < 0 or not name or any(ch in name for ch in ';"'):
            raise ProtocolError(f"Content-Disposition parameter without a value: {text[pos:][:40]!r}")
        pos = _skip_ows(text, eq + 1)
        if text.startswith('"', pos):
            close = text.find('"', pos + 1)
            if close < 0:
                raise ProtocolError(
                    f"Content-Disposition parameter {name!r} has an unterminated quoted string"
                )
            value, pos = text[pos + 1 : close], _skip_ows(text, close + 1)
        else:
            semi = text.find(";", pos)
            stop = len(text) if semi < 0 else semi
            value, pos = text[pos:stop].strip(_OWS), stop
            if '"' in value:
                raise ProtocolError(f"Content-Disposition parameter {name!r} has a stray quote")
        if pos < len(text) and text[pos] != ";":
            raise ProtocolError(f"Content-Disposition parameter {name!r} is followed by {text[pos:][:40]!r}")
        params.append((name.lower(), value))
    return kind, params


def parse_disposition(raw: bytes) -> tuple[str, dict[str, str]]:
    """``form-data; name="a"; filename="b"`` -> ``("form-data", {"name": "a", ...})``.

    Header bytes are UTF-8 (what browsers and curl send); parameter values are unquoted and
    the escapes of :func:`~nbupload.protocols.multipart.quote_param` (``%22``, ``%0D``,
    ``%0A``, ``%5C``, ``%25``) undone. A parameter given twice (``range="0-5/10";
    range="5-10/10"``) is refused: which one counts is ambiguous (RFC 6266 4.1). RFC 5987
    ``name*=`` parameters are ignored, as RFC 7578 4.2 says senders must not use them.
    """
    kind, pairs = _split_params(_text(raw))
    names = [name for name, _ in pairs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ProtocolError(f"Content-Disposition gives {', '.join(duplicated)} more than once")
    params = {name: unquote_param(value) for name, value in pairs if "*" not in name}
    return kind.lower(), params


def multipart_boundary(content_type: str) -> str:
    """The boundary of a ``multipart/form-data`` Content-Type; :class:`ProtocolError` if bad."""
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise ProtocolError("not a multipart/form-data body")
    raw = options.get(b"boundary")
    if not raw:
        raise ProtocolError("multipart Content-Type without a boundary")
    return check_boundary(raw.decode("latin-1"))


class PartStream:
    """Feed body pieces; get ``(HEAD, PartHead) | (DATA, memoryview) | (END, None)`` events."""

    def __init__(self, boundary: str) -> None:
        self.finished = False
        self.parts = 0
        self._events: list[tuple[int, object]] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._field = bytearray()
        self._value = bytearray()
        events = self._events

        def on_part_begin() -> None:
            self._headers.clear()
            self.parts += 1
            if self.parts > MAX_PARTS:
                raise ProtocolError(f"more than {MAX_PARTS} parts in one request")

        def on_header_field(data: bytes, start: int, end: int) -> None:
            self._field += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            self._value += data[start:end]

        def on_header_end() -> None:
            self._headers.append((bytes(self._field).strip().lower(), bytes(self._value).strip()))
            self._field.clear()
            self._value.clear()

        def on_headers_finished() -> None:
            events.append((HEAD, self._make_head()))

        def on_part_data(data: bytes, start: int, end: int) -> None:
            events.append((DATA, memoryview(data)[start:end]))

        def on_part_end() -> None:
            events.append((END, None))

        def on_end() -> None:
            self.finished = True

        self._parser = MultipartParser(
            boundary.encode("latin-1"),
            {
                "on_part_begin": on_part_begin,
                "on_header_field": on_header_field,
                "on_header_value": on_header_value,
                "on_header_end": on_header_end,
                "on_headers_finished": on_headers_finished,
                "on_part_data": on_part_data,
                "on_part_end": on_part_end,
                "on_end": on_end,
            },
        )

    def _make_head(self) -> PartHead:
        disposition = None
        content_type = None
        for name, value in self._headers:
            if name == b"content-disposition":
                disposition = value
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        if disposition is None:
            raise ProtocolError("a multipart part has no Content-Disposition header")
        kind, params = parse_disposition(disposition)
        if kind not in DISPOSITION_TYPES:
            raise ProtocolError(f"unsupported Content-Disposition type {kind!r} (form-data expected)")
        return PartHead(kind, params, content_type)

    def feed(self, data: bytes) -> list[tuple[int, object]]:
        """Parse one piece; the events it completed, in order."""
        self._events.clear()
        if data and not self.finished:
            try:
                self._parser.write(data)
            except MultipartParseError as exc:
                raise ProtocolError(f"malformed multipart body: {exc}") from None
        return self._events
