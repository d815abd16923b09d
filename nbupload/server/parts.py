"""A streaming ``multipart/form-data`` reader: body pieces in, part events out.

python-multipart's :class:`MultipartParser` does the scanning (``bytes.find`` for the
boundary, no per-byte Python work on part data); this module turns its callbacks into a
list of events per piece fed, so the caller can ``await`` its disk writes between events.
Part data arrive as ``memoryview`` slices of the piece just fed: no copies, valid until the
next :meth:`PartStream.feed`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..protocols.errors import ProtocolError
from ..protocols.multipart import check_boundary

__all__ = ["DATA", "END", "HEAD", "PartHead", "PartStream", "multipart_boundary", "parse_disposition"]

HEAD, DATA, END = 0, 1, 2
MAX_PARTS = 1000
_HTML5_ESCAPES = re.compile(r"%(22|0[dD]|0[aA])")
_UNESCAPE = {"22": '"', "0d": "\r", "0a": "\n"}
#: Disposition types accepted for form parts: the seed's ``attachments`` as well.
DISPOSITION_TYPES = frozenset({"form-data", "attachments", "attachment"})


def _unescape(value: str) -> str:
    # Browsers (and our encoder) write '"', CR and LF in names as %22, %0D, %0A (HTML5).
    return _HTML5_ESCAPES.sub(lambda m: _UNESCAPE[m.group(1).lower()], value)


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


def _param_names(text: str) -> list[str]:
    """Lower-cased parameter names of a header value, quoted strings skipped."""
    names, quoted, escaped, start = [], False, False, text.find(";")
    if start < 0:
        return names
    segment = ""
    for ch in text[start + 1 :] + ";":
        if quoted:
            quoted = escaped or ch != '"'
            escaped = not escaped and ch == "\\"
        elif ch == '"':
            quoted = True
        elif ch == ";":
            names.append(segment.partition("=")[0].strip().lower())
            segment = ""
        else:
            segment += ch
    return names


def parse_disposition(raw: bytes) -> tuple[str, dict[str, str]]:
    """``form-data; name="a"; filename="b"`` -> ``("form-data", {"name": "a", ...})``.

    Header bytes are UTF-8 (what browsers and curl send); parameter values are unquoted and
    their HTML5 escapes undone. A parameter given twice (``range="0-5/10"; range="5-10/10"``)
    is refused: which one counts is ambiguous (RFC 6266 4.1).
    """
    names = [n for n in _param_names(raw.decode("latin-1")) if n]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ProtocolError(f"Content-Disposition gives {', '.join(duplicated)} more than once")
    kind, options = parse_options_header(raw.decode("latin-1"))
    params = {_text(k).lower(): _unescape(_text(v)) for k, v in options.items()}
    return _text(kind).strip().lower(), params


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
