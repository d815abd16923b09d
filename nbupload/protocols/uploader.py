"""The DCloud HTML5+ ``uploader`` resumable upload protocol, both sides, sans I/O.

Theory of operation. A task is an upload *session* identified by its multipart
boundary (random, kept for the task's life). Every time the task starts or resumes, the
client POSTs a form-urlencoded *query* (``server=uploader&action=query&boundary=B``).
A server that supports resume answers with the byte ranges it already holds for each
file field; anything else (an error status, a body we cannot parse, ``support`` not
true, another boundary) means "no resume" and the client falls back to *plain* mode: one
ordinary multipart POST with the whole file. In resumable mode the client sends the
missing ranges as multipart *chunks* whose file part carries
``range="start-end/total"`` (half-open) in its Content-Disposition, in any order and
concurrently; each answer is ``{"result":"OK","code":0}`` or
``{"result":"ERROR","code":400x,"message":...}``. The server assembles the file once its
held ranges cover ``[0, total)``.

Several files in one session (PROTOCOLS.md A7, what ``plus.uploader``'s ``addFile``
builds): each file is a form field of the session, named by its field name
(:func:`check_field_name` says which names are usable); the query answer lists each
field's ranges, every chunk carries one field's range, and a plain upload carries every
file part in one request (:func:`prepare_plain_files`).

Client side: :func:`prepare_query` / :func:`process_query_answer`, :func:`prepare_chunk`
(or :func:`prepare_plain`, :func:`prepare_plain_files`) / :func:`process_chunk_answer`. Server side:
:func:`parse_query_request`, :func:`format_query_answer`, :func:`format_ok`,
:func:`format_error`. Every function is pure; the engine and the reference server do the
I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlencode

from .errors import ProtocolError
from .lenient import loads_lenient
from .multipart import DEFAULT_PIECE_SIZE, Field, FilePart, MultipartEncoder, Source, check_boundary
from .ranges import RangeSet, format_range_attr
from .verdict import Verdict, VerdictKind, is_retryable_status

__all__ = [
    "ERROR_MESSAGES",
    "ERROR_STATUS",
    "FATAL_CODES",
    "PROTOCOL_NAME",
    "RETRY_CODES",
    "ChunkAnswer",
    "ErrorCode",
    "FileField",
    "QueryAnswer",
    "check_field_name",
    "classify_chunk",
    "classify_query",
    "describe_code",
    "format_error",
    "format_ok",
    "format_query_answer",
    "parse_query_request",
    "prepare_chunk",
    "prepare_plain",
    "prepare_plain_files",
    "prepare_query",
    "process_chunk_answer",
    "process_query_answer",
]

PROTOCOL_NAME = "uploader"
QUERY_CONTENT_TYPE = "application/x-www-form-urlencoded"


class ErrorCode(IntEnum):
    """The seed's error table (4005 does not exist)."""

    SUCCESS = 0
    REQUEST_TOO_LARGE = 4001
    FILE_TOO_LARGE = 4002
    PARTIAL_UPLOAD = 4003
    NO_FILE = 4004
    NO_TEMP_DIR = 4006
    CANNOT_WRITE = 4007
    STOPPED_BY_RULE = 4008


#: The seed's own wording, which users will search for.
ERROR_MESSAGES: Mapping[int, str] = {
    0: "Success",
    4001: "File exceeded upload_max_filesize",
    4002: "File exceeded max_file_size",
    4003: "File only partially uploaded",
    4004: "No file uploaded",
    4006: "Cannot upload file: No temp directory specified",
    4007: "Upload failed: Cannot write to disk",
    4008: "File upload stopped by extension",
}

#: HTTP status the reference server sends with each code.
ERROR_STATUS: Mapping[int, int] = {
    4001: 413,
    4002: 413,
    4003: 400,
    4004: 400,
    4006: 500,
    4007: 507,
    4008: 403,
}


def describe_code(code: int | None) -> str:
    """``"4002 File exceeded max_file_size"``, or just the number for unknown codes."""
    if code is None:
        return ""
    text = ERROR_MESSAGES.get(code)
    return f"{code} {text}" if text else str(code)


# --------------------------------------------------------------------------- query
def prepare_query(boundary: str) -> tuple[dict[str, str], bytes]:
    """Headers and body of the query request for session ``boundary``."""
    body = urlencode({"server": PROTOCOL_NAME, "action": "query", "boundary": boundary}).encode("ascii")
    return {"Content-Type": QUERY_CONTENT_TYPE, "Content-Length": str(len(body))}, body


@dataclass(frozen=True)
class QueryAnswer:
    """What a query told us. ``resumable`` false means: upload in plain mode."""

    resumable: bool
    held: Mapping[str, RangeSet] = field(default_factory=dict)
    data: tuple[str, ...] = ()
    reason: str = ""

    def ranges_for(self, name: str) -> RangeSet:
        return self.held.get(name, RangeSet())


def _flatten(items: Any) -> list[Any]:
    """The seed's example nests the file list one level too deep: accept any depth."""
    out: list[Any] = []
    stack = [items]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def process_query_answer(status: int, body: bytes | str, boundary: str) -> QueryAnswer:
    """Judge a query answer. Never raises: a bad answer only means "not resumable"."""
    if status != 200:
        return QueryAnswer(False, reason=f"query answered HTTP {status}")
    try:
        obj = loads_lenient(body)
    except ProtocolError as exc:
        return QueryAnswer(False, reason=f"query answer unparseable: {exc}")
    if not isinstance(obj, dict):
        return QueryAnswer(False, reason="query answer is not an object")
    if not _truthy(obj.get("support")):
        return QueryAnswer(False, reason="server does not support resume")
    if str(obj.get("boundary", "")) != boundary:
        return QueryAnswer(False, reason="query answer is for another boundary")
    held: dict[str, RangeSet] = {}
    for item in _flatten(obj.get("file") or []):
        if not isinstance(item, dict) or "name" not in item:
            return QueryAnswer(False, reason="query answer has a malformed file entry")
        try:
            ranges = RangeSet.parse(None if item.get("range") is None else str(item["range"]))
        except ProtocolError as exc:
            return QueryAnswer(False, reason=f"query answer has a bad range: {exc}")
        name = str(item["name"])
        held[name] = held.get(name, RangeSet()) | ranges
    data = tuple(
        str(item["name"])
        for item in _flatten(obj.get("data") or [])
        if isinstance(item, dict) and "name" in item
    )
    return QueryAnswer(True, held=held, data=data)


# --------------------------------------------------------------------------- chunks
def _fields(fields: Mapping[str, str] | Sequence[tuple[str, str]] | None) -> list[Field]:
    items = fields.items() if isinstance(fields, Mapping) else (fields or ())
    return [Field(str(k), v) for k, v in items]


def prepare_chunk(
    boundary: str,
    source: Source,
    start: int,
    end: int,
    *,
    name: str = "file",
    filename: str = "file",
    fields: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    content_type: str = "application/octet-stream",
    piece_size: int = DEFAULT_PIECE_SIZE,
) -> MultipartEncoder:
    """The multipart body of one resumable chunk ``[start, end)`` of ``source``.

    Data fields travel in every chunk (the server keeps the last value); the file part
    comes last so a server can read the fields before it streams the data.
    """
    check_boundary(boundary)
    rng = format_range_attr(start, end, source.size)
    part = FilePart(name, filename, source, start, end - start, content_type, {"range": rng})
    return MultipartEncoder([*_fields(fields), part], boundary, piece_size)


def prepare_plain(
    boundary: str,
    source: Source,
    *,
    name: str = "file",
    filename: str = "file",
    fields: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    content_type: str = "application/octet-stream",
    piece_size: int = DEFAULT_PIECE_SIZE,
) -> MultipartEncoder:
    """The one multipart body of a plain (non-resumable) upload: no ``range``."""
    part = FilePart(name, filename, source, 0, source.size, content_type)
    return MultipartEncoder([*_fields(fields), part], boundary, piece_size)


@dataclass(frozen=True)
class FileField:
    """One file of a session: its form field ``name``, the ``filename`` sent, its bytes."""

    name: str
    filename: str
    source: Source
    content_type: str = "application/octet-stream"


#: A field name the client sends: letters, digits (any script), ``_ . - [ ]``, at most 100.
_FIELD_NAME = re.compile(r"[\w.\-\[\]]{1,100}")


def check_field_name(name: str) -> str:
    """``name`` if it is a usable form field name, else :class:`ProtocolError` saying why.

    Browsers accept any text, but a name must survive every server's form parser and a
    command line's ``FIELD=PATH``: no quotes, ``=``, ``;``, spaces or control characters.
    """
    if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
        raise ProtocolError(
            f"{name!r} is not a usable form field name: use 1 to 100 letters, digits, '_', '.', '-', "
            "'[' or ']' (e.g. photo, doc, files[])"
        )
    return name


def prepare_plain_files(
    boundary: str,
    files: Sequence[FileField],
    *,
    fields: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    piece_size: int = DEFAULT_PIECE_SIZE,
) -> MultipartEncoder:
    """The one multipart body of a plain upload of a session's files (A6, A7): the data
    fields first, then every file part whole, without ``range``."""
    parts = [FilePart(f.name, f.filename, f.source, 0, f.source.size, f.content_type) for f in files]
    return MultipartEncoder([*_fields(fields), *parts], boundary, piece_size)


@dataclass(frozen=True)
class ChunkAnswer:
    """The server's verdict on a chunk (or a plain upload)."""

    ok: bool
    status: int
    code: int | None = None
    message: str = ""
    held: RangeSet | None = None
    complete: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The failure in words, without the code: the seed's phrase, then the server's detail.

        Servers often repeat the phrase in their message; it is said once.
        """
        phrase = ERROR_MESSAGES.get(self.code) if self.code else None
        message = self.message.strip()
        if phrase and message and not message.startswith(phrase):
            return f"{phrase}: {message}"
        return message or phrase or _reason(self.status) or f"HTTP {self.status}"

    def describe(self) -> str:
        """Human text: ``4002 File exceeded max_file_size`` or ``HTTP 502 Bad Gateway``."""
        if self.code:
            return f"{self.code} {self.text}"
        if self.message:
            return f"HTTP {self.status}: {self.message}"
        return f"HTTP {self.status} {_reason(self.status)}".rstrip()


#: Codes that can never succeed by trying again (4001, request too large, asks for a smaller one).
FATAL_CODES = frozenset({ErrorCode.FILE_TOO_LARGE, ErrorCode.NO_FILE, ErrorCode.STOPPED_BY_RULE})
#: Codes worth another try.
RETRY_CODES = frozenset({ErrorCode.PARTIAL_UPLOAD, ErrorCode.NO_TEMP_DIR, ErrorCode.CANNOT_WRITE})


def classify_chunk(answer: ChunkAnswer, location: str | None = None) -> Verdict:
    """What a chunk (or plain upload) answer means for the client.

    ``location`` is the answer's ``Location`` header (a redirect names it to the user).
    """
    if answer.ok:
        return Verdict(VerdictKind.OK)
    status, code = answer.status, answer.code
    if 300 <= status < 400:
        return Verdict(VerdictKind.REDIRECT, location or "?")
    if code == ErrorCode.REQUEST_TOO_LARGE or (status == 413 and code is None):
        return Verdict(VerdictKind.TOO_LARGE)
    if code in FATAL_CODES or status in (401, 403, 404, 413):
        return Verdict(VerdictKind.FATAL)
    if code in RETRY_CODES or is_retryable_status(status):
        return Verdict(VerdictKind.RETRY)
    return Verdict(VerdictKind.FATAL)


def classify_query(status: int, answer: QueryAnswer, known_resumable: bool) -> Verdict:
    """What a query answer means: resume (OK), plain fallback, or try again / give up.

    A first answer that is not a resume answer means plain mode; "try later" statuses, or
    any bad answer once the session is known to be resumable, are retried (401, 403, 404
    and 405 are not: asking again cannot help).
    """
    if answer.resumable:
        return Verdict(VerdictKind.OK)
    if status in (408, 429) or status >= 500 or known_resumable:
        return Verdict(VerdictKind.FATAL if status in (401, 403, 404, 405) else VerdictKind.RETRY)
    return Verdict(VerdictKind.PLAIN)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def process_chunk_answer(status: int, body: bytes | str) -> ChunkAnswer:
    """Judge a chunk answer as the original runtime did.

    2xx with ``result`` OK, or with an empty or unparseable body, is success;
    ``result`` ERROR is failure whatever the status; any other status is failure.
    """
    try:
        obj = loads_lenient(body) if body else None
    except ProtocolError:
        obj = None
    if not isinstance(obj, dict):
        obj = {}
    result = str(obj.get("result", "")).strip().upper()
    code: int | None
    try:
        code = int(obj["code"]) if obj.get("code") is not None else None
    except (TypeError, ValueError, OverflowError):  # OverflowError: "code":Infinity
        code = None
    message = str(obj.get("message") or "")
    ok = 200 <= status < 300 and result != "ERROR"
    if not ok and code == 0:
        code = None
    if not ok and not message and code is not None:
        message = ERROR_MESSAGES.get(code, "")
    held = None
    if obj.get("range") is not None:
        try:
            held = RangeSet.parse(str(obj["range"]))
        except ProtocolError:
            held = None
    extra = {k: v for k, v in obj.items() if k not in {"result", "code", "message", "range", "complete"}}
    return ChunkAnswer(ok, status, code, message, held, _truthy(obj.get("complete")), extra)


# --------------------------------------------------------------------------- server side
def parse_query_request(body: bytes) -> str:
    """The boundary of a query request body; :class:`ProtocolError` if it is not a query."""
    try:
        form = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=True, max_num_fields=16)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"malformed query request: {exc}") from None
    if form.get("server", [""])[0] != PROTOCOL_NAME or form.get("action", [""])[0] != "query":
        raise ProtocolError("not an uploader query (server=uploader&action=query expected)")
    boundary = form.get("boundary", [""])[0]
    if not boundary:
        raise ProtocolError("query request without a boundary")
    return check_boundary(boundary)


def _dumps(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def format_query_answer(boundary: str, files: Mapping[str, RangeSet], data: Sequence[str] = ()) -> bytes:
    """The body of a "resume supported" query answer."""
    return _dumps(
        {
            "protocol": PROTOCOL_NAME,
            "support": True,
            "boundary": boundary,
            "file": [{"name": name, "range": str(ranges)} for name, ranges in files.items()],
            "data": [{"name": name} for name in data],
        }
    )


def format_ok(**extra: Any) -> bytes:
    """A success answer: ``{"result":"OK","code":0,...}``."""
    return _dumps({"result": "OK", "code": 0, **extra})


def format_error(code: int, message: str | None = None, *, status: int | None = None) -> tuple[int, bytes]:
    """Status and body of a failure answer; the message defaults to the seed's wording."""
    if status is None:
        status = ERROR_STATUS.get(code, 400)
    text = message if message is not None else ERROR_MESSAGES.get(code, HTTPStatus(status).phrase)
    return status, _dumps({"result": "ERROR", "code": code, "message": text})
