"""Wangsu Cloud Storage (WCS) append upload, both sides, sans I/O.

Theory of operation. An *appendable object* ``bucket/key`` grows by
``POST /append/<position>`` requests, each a multipart form with an upload ``token``,
optional ``x:<name>`` variables, ``key``, ``mimeType``, ``deadline`` (retention days) and
the ``file`` part holding the bytes to append. ``position`` must equal the object's
current size; the answer carries ``x-wcs-next-append-position`` (the new size) and
``x-wcs-object-type``. A success body is URL-safe base64 of ``hash=<etag>`` (after any
``returnBody`` fields); a failure body is JSON ``{"code":..., "message":...}``. A wrong
position answers 409 with the real size, which is how a client recovers from a lost
answer without ever appending twice (see :func:`judge_replay`).

The token is ``AccessKey:EncodedSign:EncodedPutPolicy`` where the policy JSON is URL-safe
base64 encoded and the sign is URL-safe base64 of the lowercase hex HMAC-SHA1 of the
encoded policy under the secret key. The object's hash (etag) is Qiniu's qetag: SHA1 of
the data for one 4 MiB block or less, else SHA1 of the concatenated block SHA1s, with a
one-byte prefix (0x16 or 0x96), URL-safe base64.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from .errors import ProtocolError, TokenError
from .lenient import loads_lenient
from .multipart import DEFAULT_PIECE_SIZE, Field, FilePart, MultipartEncoder, Source

__all__ = [
    "APPEND_POSITION_HEADER",
    "AppendAnswer",
    "BLOCK_SIZE",
    "EtagHasher",
    "OBJECT_TYPE_HEADER",
    "PutPolicy",
    "ReplayVerdict",
    "append_path",
    "etag_of",
    "format_append_error",
    "format_append_success",
    "judge_replay",
    "make_token",
    "parse_append_path",
    "parse_token",
    "prepare_append",
    "process_append_answer",
    "redact_token",
    "render_return_body",
    "resolve_object",
    "sign",
    "verify_token",
]

BLOCK_SIZE = 4 * 1024 * 1024
APPEND_POSITION_HEADER = "x-wcs-next-append-position"
OBJECT_TYPE_HEADER = "x-wcs-object-type"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    text = text.strip()
    # Padding is kept by the spec, but tolerate tokens that lost it.
    text += "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise ProtocolError(f"invalid URL-safe base64: {exc}") from None


# --------------------------------------------------------------------------- tokens
def sign(secret_key: str, data: str) -> str:
    """``EncodedSign``: URL-safe base64 of the lowercase hex HMAC-SHA1 of ``data``."""
    digest = hmac.new(secret_key.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).hexdigest()
    return _b64(digest.encode("ascii"))


@dataclass(frozen=True)
class PutPolicy:
    """The upload policy a token grants. ``deadline`` is Unix time in milliseconds."""

    scope: str
    deadline: int
    overwrite: int | None = None
    fsize_limit: int = 0
    return_body: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def bucket(self) -> str:
        return self.scope.partition(":")[0]

    @property
    def key(self) -> str | None:
        bucket, sep, key = self.scope.partition(":")
        return key if sep else None

    def to_json(self) -> str:
        obj: dict[str, Any] = {"scope": self.scope, "deadline": str(self.deadline)}
        if self.overwrite is not None:
            obj["overwrite"] = self.overwrite
        if self.fsize_limit:
            obj["fsizeLimit"] = self.fsize_limit
        if self.return_body is not None:
            obj["returnBody"] = self.return_body
        obj.update(self.extra)
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_obj(cls, obj: Any) -> PutPolicy:
        if not isinstance(obj, dict):
            raise TokenError("token policy is not a JSON object")
        scope = obj.get("scope")
        if not isinstance(scope, str) or not scope or scope.startswith(":"):
            raise TokenError("token policy has no valid scope")
        try:
            deadline = int(str(obj.get("deadline")).strip())
        except (TypeError, ValueError):
            raise TokenError("token policy has no valid deadline (Unix time in milliseconds)") from None
        try:
            fsize_limit = int(obj.get("fsizeLimit") or 0)
        except (TypeError, ValueError, OverflowError):
            raise TokenError("token policy has an invalid fsizeLimit") from None
        overwrite = obj.get("overwrite")
        try:
            overwrite = None if overwrite is None else int(overwrite)
        except (TypeError, ValueError, OverflowError):
            raise TokenError("token policy has an invalid overwrite flag") from None
        return_body = obj.get("returnBody")
        known = {"scope", "deadline", "fsizeLimit", "overwrite", "returnBody"}
        return cls(
            scope=scope,
            deadline=deadline,
            overwrite=overwrite,
            fsize_limit=max(fsize_limit, 0),
            return_body=None if return_body is None else str(return_body),
            extra={k: v for k, v in obj.items() if k not in known},
        )


def make_token(access_key: str, secret_key: str, policy: PutPolicy | str) -> str:
    """``AccessKey:EncodedSign:EncodedPutPolicy`` for ``policy`` (a PutPolicy or raw JSON)."""
    if not access_key or ":" in access_key:
        raise ValueError("access key must be non-empty and contain no ':'")
    if not secret_key:
        raise ValueError("secret key must be non-empty")
    text = policy.to_json() if isinstance(policy, PutPolicy) else policy
    encoded = _b64(text.encode("utf-8"))
    return f"{access_key}:{sign(secret_key, encoded)}:{encoded}"


def redact_token(token: str) -> str:
    """A token with its signature hidden, for logs and error messages."""
    ak, _, rest = str(token).partition(":")
    return f"{ak}:***" if rest else "***"


def parse_token(token: str) -> tuple[str, str, str]:
    """Split a token into access key, encoded sign and encoded policy (not verified)."""
    parts = str(token).strip().split(":")
    if len(parts) != 3 or not all(parts):
        raise TokenError("malformed upload token: expected AccessKey:EncodedSign:EncodedPutPolicy")
    return parts[0], parts[1], parts[2]


def verify_token(token: str, credentials: Mapping[str, str], now_ms: int) -> PutPolicy:
    """Check signature and deadline; return the policy or raise :class:`TokenError`."""
    access_key, encoded_sign, encoded_policy = parse_token(token)
    secret_key = credentials.get(access_key)
    if secret_key is None:
        raise TokenError(f"unknown access key {access_key!r}")
    expected = sign(secret_key, encoded_policy)
    if not hmac.compare_digest(expected.encode("ascii"), encoded_sign.strip().encode("ascii", "replace")):
        raise TokenError("token signature does not match its policy (wrong secret key or tampered policy)")
    try:
        obj = json.loads(_unb64(encoded_policy).decode("utf-8"))
    except (ProtocolError, UnicodeDecodeError, ValueError, RecursionError):
        raise TokenError("token policy is not valid base64-encoded JSON") from None
    policy = PutPolicy.from_obj(obj)
    if now_ms > policy.deadline:
        raise TokenError(
            f"token expired (deadline {policy.deadline} ms is {now_ms - policy.deadline} ms in the past)"
        )
    return policy


_KEY_MAX = 1024


def resolve_object(policy: PutPolicy, form_key: str | None) -> tuple[str, str]:
    """The ``(bucket, key)`` an append writes to; :class:`TokenError` if out of scope."""
    scoped = policy.key
    if form_key:
        if scoped is not None and form_key != scoped:
            raise TokenError(f"token scope {policy.scope!r} does not cover key {form_key!r}")
        key = form_key
    elif scoped:
        key = scoped
    else:
        raise ProtocolError("no key: give a key field or a token scoped to bucket:key")
    if len(key.encode("utf-8")) > _KEY_MAX:
        raise ProtocolError("key too long")
    return policy.bucket, key


_VAR = re.compile(r"\$\(([A-Za-z0-9_:.-]+)\)")


def render_return_body(template: str, variables: Mapping[str, str]) -> list[tuple[str, str]]:
    """Expand a ``returnBody`` such as ``name=$(fname)&size=$(fsize)`` into pairs."""
    text = _VAR.sub(lambda m: str(variables.get(m.group(1), "")), template)
    pairs = []
    for item in text.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((name, value))
    return pairs


# --------------------------------------------------------------------------- etag
class EtagHasher:
    """Streaming WCS etag (qetag): constant memory, any update sizes."""

    __slots__ = ("_block", "_block_len", "_blocks", "size")

    def __init__(self) -> None:
        self._block = hashlib.sha1()
        self._block_len = 0
        self._blocks: list[bytes] = []
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        self.size += view.nbytes
        while view.nbytes:
            room = BLOCK_SIZE - self._block_len
            take = view[:room]
            self._block.update(take)
            self._block_len += take.nbytes
            view = view[take.nbytes :]
            if self._block_len == BLOCK_SIZE and view.nbytes:
                self._blocks.append(self._block.digest())
                self._block = hashlib.sha1()
                self._block_len = 0

    def copy(self) -> EtagHasher:
        """An independent copy (the hashlib idiom): the engine hashes an append on a copy
        and keeps it only once the server confirms the append."""
        twin = EtagHasher()
        twin._block = self._block.copy()
        twin._block_len = self._block_len
        twin._blocks = list(self._blocks)
        twin.size = self.size
        return twin

    @classmethod
    def from_blocks(cls, digests: Sequence[bytes]) -> EtagHasher:
        """Resume after ``len(digests)`` complete 4 MiB blocks whose SHA1s were kept.

        The server keeps these per appendable object so an append re-hashes at most the
        last partial block, not the whole object.
        """
        hasher = cls()
        hasher._blocks = [bytes(d) for d in digests]
        hasher.size = len(hasher._blocks) * BLOCK_SIZE
        return hasher

    def block_digests(self) -> list[bytes]:
        """SHA1s of every complete block seen so far (a full last block included)."""
        if self._block_len == BLOCK_SIZE:
            return [*self._blocks, self._block.digest()]
        return list(self._blocks)

    def etag(self) -> str:
        blocks = list(self._blocks)
        if self._block_len or not blocks:
            blocks.append(self._block.digest())
        if len(blocks) == 1:
            return _b64(b"\x16" + blocks[0])
        return _b64(b"\x96" + hashlib.sha1(b"".join(blocks)).digest())


def etag_of(source: Source | bytes, piece_size: int = BLOCK_SIZE) -> str:
    """The etag of a whole source (read in pieces) or of bytes."""
    hasher = EtagHasher()
    if isinstance(source, (bytes, bytearray, memoryview)):
        hasher.update(source)
        return hasher.etag()
    for offset in range(0, source.size, piece_size):
        data = source.pread(min(piece_size, source.size - offset), offset)
        hasher.update(data)
    return hasher.etag()


# --------------------------------------------------------------------------- append
def append_path(position: int) -> str:
    if position < 0:
        raise ValueError("append position must be >= 0")
    return f"/append/{position}"


def parse_append_path(path: str) -> int:
    """The position in ``/append/<position>``; :class:`ProtocolError` when malformed."""
    prefix = "/append/"
    if not path.startswith(prefix):
        raise ProtocolError("not an append path")
    text = path[len(prefix) :].rstrip("/")
    if not text.isascii() or not text.isdecimal() or len(text) > 19:
        raise ProtocolError(f"invalid append position {text!r}")
    return int(text)


def prepare_append(
    token: str,
    source: Source,
    offset: int = 0,
    length: int | None = None,
    *,
    key: str | None = None,
    mime: str | None = None,
    deadline_days: int | None = None,
    variables: Mapping[str, str] | None = None,
    filename: str = "file",
    boundary: str | None = None,
    piece_size: int = DEFAULT_PIECE_SIZE,
) -> MultipartEncoder:
    """The multipart body appending ``source[offset:offset+length]``."""
    parts: list[Field | FilePart] = [Field("token", token)]
    for name, value in (variables or {}).items():
        parts.append(Field(name if name.startswith("x:") else f"x:{name}", value))
    if key is not None:
        parts.append(Field("key", key))
    if mime:
        parts.append(Field("mimeType", mime))
    if deadline_days is not None:
        parts.append(Field("deadline", str(int(deadline_days))))
    length = source.size - offset if length is None else length
    parts.append(FilePart("file", filename, source, offset, length, mime or "application/octet-stream"))
    return MultipartEncoder(parts, boundary, piece_size)


@dataclass(frozen=True)
class AppendAnswer:
    ok: bool
    status: int
    next_position: int | None = None
    object_type: str | None = None
    hash: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    code: str | None = None
    message: str = ""

    @property
    def text(self) -> str:
        """The failure in words, without code or status."""
        if self.message:
            return self.message
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return f"HTTP {self.status}"

    def describe(self) -> str:
        text = f"HTTP {self.status}"
        if self.code and self.code != str(self.status):
            text += f" ({self.code})"
        return f"{text}: {self.message}" if self.message else text


def _header(headers: Mapping[str, str] | Sequence[tuple[str, str]], name: str) -> str | None:
    items = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in items:
        if key.lower() == name:
            return value
    return None


def process_append_answer(
    status: int, headers: Mapping[str, str] | Sequence[tuple[str, str]], body: bytes
) -> AppendAnswer:
    """Judge an append answer; never raises on a bad body (the status decides)."""
    pos_text = _header(headers, APPEND_POSITION_HEADER)
    pos_text = pos_text.strip() if pos_text is not None else ""
    # A byte count in ASCII digits only: int() would also take "-5", "1_000" and "١٢".
    next_position = (
        int(pos_text) if pos_text.isascii() and pos_text.isdigit() and len(pos_text) <= 19 else None
    )
    object_type = _header(headers, OBJECT_TYPE_HEADER)
    object_type = object_type.strip() if object_type else None
    if 200 <= status < 300:
        fields: dict[str, str] = {}
        try:
            text = _unb64(body.decode("ascii")).decode("utf-8")
            for item in text.split("&"):
                name, _, value = item.partition("=")
                if name:
                    fields[name] = value
        except (ProtocolError, UnicodeDecodeError):
            fields = {}
        return AppendAnswer(True, status, next_position, object_type, fields.get("hash"), fields)
    code = None
    message = ""
    try:
        obj = loads_lenient(body) if body else None
        if isinstance(obj, dict):
            code = None if obj.get("code") is None else str(obj["code"])
            message = str(obj.get("message") or "")
    except ProtocolError:
        message = body[:200].decode("utf-8", "replace").strip()
    return AppendAnswer(False, status, next_position, object_type, None, {}, code, message)


@dataclass(frozen=True)
class ReplayVerdict:
    """What a replayed append at the same position tells about the lost first try."""

    landed: bool  # the first try had been applied; go on from next_position
    conflict: bool  # someone else appended: stop and tell the user
    next_position: int | None


def judge_replay(position: int, length: int, answer: AppendAnswer) -> ReplayVerdict:
    """PROTOCOLS.md B5: after a lost answer the client sends the same append again.

    Success: the first had not landed. 409 with ``next = position + length``: the first had
    landed. Any other 409 position: a conflict, never silently overwritten. Other failures
    are for the caller's retry policy (neither landed nor conflict).
    """
    if answer.ok:
        return ReplayVerdict(False, False, answer.next_position)
    if answer.status == 409 and answer.object_type != "Normal" and answer.next_position is not None:
        if answer.next_position == position + length:
            return ReplayVerdict(True, False, answer.next_position)
        return ReplayVerdict(False, True, answer.next_position)
    return ReplayVerdict(False, False, answer.next_position)


def format_append_success(
    next_position: int, etag: str, return_fields: Sequence[tuple[str, str]] = ()
) -> tuple[int, dict[str, str], bytes]:
    text = "&".join([*(f"{k}={v}" for k, v in return_fields), f"hash={etag}"])
    headers = {APPEND_POSITION_HEADER: str(next_position), OBJECT_TYPE_HEADER: "Appendable"}
    return 200, headers, _b64(text.encode("utf-8")).encode("ascii")


def format_append_error(
    status: int,
    message: str,
    *,
    next_position: int | None = None,
    object_type: str | None = None,
    code: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    headers: dict[str, str] = {"content-type": "application/json"}
    if next_position is not None:
        headers[APPEND_POSITION_HEADER] = str(next_position)
    if object_type is not None:
        headers[OBJECT_TYPE_HEADER] = object_type
    body = json.dumps({"code": code or str(status), "message": message}, ensure_ascii=False).encode("utf-8")
    return status, headers, body
