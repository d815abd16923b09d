"""A streaming ``multipart/form-data`` encoder.

Both protocols send files as multipart bodies. The encoder knows the exact
``Content-Length`` before the first byte goes out, and yields the body as ``bytes``
pieces of at most ``piece_size`` bytes read with ``os.pread`` from a slice of the source,
so memory stays at one piece whatever the file size and no large buffer is ever
concatenated. It does no network I/O; the caller iterates and sends.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .errors import ProtocolError

__all__ = [
    "DEFAULT_PIECE_SIZE",
    "PARAM_ESCAPES",
    "BytesSource",
    "Field",
    "FilePart",
    "FileSource",
    "MultipartEncoder",
    "ShortReadError",
    "Source",
    "new_boundary",
    "quote_param",
    "unquote_param",
]

DEFAULT_PIECE_SIZE = 1024 * 1024
_BCHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")


class ShortReadError(OSError):
    """The source returned fewer bytes than its size promised: it changed under us."""


class Source(Protocol):
    """Random-access bytes of a known size."""

    size: int

    def pread(self, size: int, offset: int) -> bytes: ...


class FileSource:
    """An open file descriptor read with ``os.pread`` (thread-safe, no shared offset)."""

    __slots__ = ("fd", "size")

    def __init__(self, fd: int, size: int | None = None) -> None:
        self.fd = fd
        self.size = os.fstat(fd).st_size if size is None else size

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self.fd, size, offset)


class BytesSource:
    """An in-memory bytes-like object, sliced without copying the whole."""

    __slots__ = ("_view", "size")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self.size = self._view.nbytes

    def pread(self, size: int, offset: int) -> bytes:
        return bytes(self._view[offset : offset + size])


def new_boundary() -> str:
    """A fresh boundary with 128 random bits; in the uploader protocol it is the session id."""
    return "----nbupload" + secrets.token_hex(16)


def check_boundary(boundary: str) -> str:
    if not 1 <= len(boundary) <= 70 or not set(boundary) <= _BCHARS or boundary.endswith(" "):
        raise ProtocolError(f"invalid multipart boundary {boundary!r}")
    return boundary


#: What :func:`quote_param` escapes, and :func:`unquote_param` undoes (upper or lower case hex).
PARAM_ESCAPES = {'"': "%22", "\r": "%0D", "\n": "%0A", "\\": "%5C", "%": "%25"}
_ESCAPED = re.compile(r"%(22|0[dD]|0[aA]|5[cC]|25)")
_UNESCAPE = {"22": '"', "0d": "\r", "0a": "\n", "5c": "\\", "25": "%"}
_NEEDS_ESCAPE = re.compile(r'["\r\n\\]|%(?=22|0[dD]|0[aA]|5[cC]|25)')
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def quote_param(value: str) -> str:
    """Quote a Content-Disposition parameter value (a field name, a filename) unambiguously.

    Browsers (the HTML multipart/form-data encoding) send ``"`` as ``%22``, CR as ``%0D``,
    LF as ``%0A`` and everything else raw, backslashes included; a receiver that reads
    backslash escapes in quoted strings (python-multipart, RFC 7230) then takes ``"a\\"`` for
    an unterminated string and loses the parameters after it. So a backslash is sent as
    ``%5C`` as well, and a ``%`` that would otherwise read as one of these five escapes as
    ``%25``: every other ``%`` goes raw, as browsers send it. :func:`unquote_param` is the
    exact inverse; nothing else is escaped (non-ASCII goes as UTF-8, like browsers).

    A name that is not text (a file name's undecodable bytes, as ``os.fsdecode`` leaves them in
    lone surrogates) cannot go as UTF-8: each such byte is sent as U+FFFD, as browsers replace
    what they cannot encode. The data is unchanged; only the name is approximated.
    """
    value = _LONE_SURROGATE.sub("\ufffd", value)
    return '"' + _NEEDS_ESCAPE.sub(lambda m: PARAM_ESCAPES[m.group()], value) + '"'


def unquote_param(text: str) -> str:
    """The value :func:`quote_param` encoded (its content without the quotes): the five escapes
    undone in one pass, so ``%2522`` is ``%22``, not ``"``."""
    return _ESCAPED.sub(lambda m: _UNESCAPE[m.group(1).lower()], text)


@dataclass(frozen=True)
class Field:
    """A plain form field."""

    name: str
    value: str | bytes


@dataclass(frozen=True)
class FilePart:
    """The ``[offset, offset + length)`` slice of ``source`` as a file part.

    ``params`` are extra Content-Disposition parameters, in order (the uploader protocol's
    ``range``).
    """

    name: str
    filename: str
    source: Source
    offset: int = 0
    length: int | None = None
    content_type: str = "application/octet-stream"
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.source.size - self.offset if self.length is None else self.length


def _part_head(boundary: str, disposition: str, content_type: str | None) -> bytes:
    lines = [f"--{boundary}", f"Content-Disposition: {disposition}"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class MultipartEncoder:
    """Encode fields and file slices as one ``multipart/form-data`` body.

    Iterating yields the body; ``content_length`` is exact. The encoder can be iterated
    more than once (each pass re-reads the source), which a retry needs.
    """

    def __init__(
        self,
        parts: Sequence[Field | FilePart],
        boundary: str | None = None,
        piece_size: int = DEFAULT_PIECE_SIZE,
    ) -> None:
        self.boundary = check_boundary(boundary or new_boundary())
        if piece_size <= 0:
            raise ValueError("piece_size must be positive")
        self.piece_size = piece_size
        # Each item: either small encoded bytes, or a file part to stream.
        self._items: list[bytes | FilePart] = []
        for part in parts:
            if isinstance(part, FilePart):
                if part.offset < 0 or part.size < 0 or part.offset + part.size > part.source.size:
                    raise ProtocolError(
                        f"slice {part.offset}+{part.size} outside a source of {part.source.size} bytes"
                    )
                disp = f"form-data; name={quote_param(part.name)}; filename={quote_param(part.filename)}"
                for key, param in part.params.items():
                    disp += f"; {key}={quote_param(param)}"
                self._items.append(_part_head(self.boundary, disp, part.content_type))
                self._items.append(part)
                self._items.append(b"\r\n")
            else:
                value = part.value.encode("utf-8") if isinstance(part.value, str) else bytes(part.value)
                head = _part_head(self.boundary, f"form-data; name={quote_param(part.name)}", None)
                self._items.append(head + value + b"\r\n")
        self._items.append(f"--{self.boundary}--\r\n".encode("ascii"))
        self.content_length = sum(
            item.size if isinstance(item, FilePart) else len(item) for item in self._items
        )

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": self.content_type, "Content-Length": str(self.content_length)}

    def segments(self) -> Iterator[bytes | FilePart]:
        """The body as its encoded framing (``bytes``) and its file slices (:class:`FilePart`),
        in order: a sender that can move a slice without reading it (``sendfile``) writes the
        framing itself and the slices its own way; the lengths add up to ``content_length``."""
        return iter(self._items)

    def __iter__(self) -> Iterator[bytes]:
        for item in self._items:
            if isinstance(item, FilePart):
                yield from self._iter_slice(item)
            else:
                yield item

    def _iter_slice(self, part: FilePart) -> Iterator[bytes]:
        pos = part.offset
        end = part.offset + part.size
        while pos < end:
            want = min(self.piece_size, end - pos)
            data = part.source.pread(want, pos)
            if len(data) != want:
                raise ShortReadError(
                    f"source returned {len(data)} bytes at offset {pos}, expected {want}: "
                    "it was truncated or changed while uploading"
                )
            pos += want
            yield data

    def read_all(self) -> bytes:
        """The whole body at once: for tests and tiny bodies only."""
        return b"".join(self)
