"""``POST /append/<position>``: WCS append upload.

Wire decisions come from :mod:`nbupload.protocols.wcs`. When the form's ``token`` (and
``key``) come before the ``file`` part, as the WCS document lays them out, the bytes are
written straight into the object under its lock. When the file part comes first (``curl -F
file=@x -F key=... -F token=...`` orders them so), nothing can be checked yet: the bytes are
spooled to ``ROOT/.wcs/spool/`` and appended once the form is complete. Either way a failed
append leaves the object exactly as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from typing import Any, cast

from ..protocols.errors import ProtocolError, TokenError
from ..protocols.wcs import (
    PutPolicy,
    format_append_error,
    format_append_success,
    parse_append_path,
    render_return_body,
    resolve_object,
    verify_token,
)
from .body import BodyCutShort, BodyReader, BodyTimedOut, BodyTooLarge, request_body
from .diskio import OffsetWriter
from .http import Send, header, respond
from .names import UnsafeNameError, split_key
from .objects import AppendTarget, NotAppendable, private_dir
from .parts import DATA, HEAD, PartHead, PartStream, multipart_boundary
from .state import ServerState

__all__ = ["AppendError", "handle_append"]

FIELD_MAX_BYTES = 64 * 1024
_SPOOL_READ = 1024 * 1024


class AppendError(Exception):
    """A WCS failure answer."""

    def __init__(
        self, status: int, message: str, *, next_position: int | None = None, object_type: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.next_position = next_position
        self.object_type = object_type

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        return format_append_error(
            self.status, self.message, next_position=self.next_position, object_type=self.object_type
        )


def _cannot_write(exc: OSError) -> AppendError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return AppendError(507, f"cannot write to disk: {reason}")


class _Append:
    """One append request."""

    def __init__(
        self, state: ServerState, position: int, reader: BodyReader, stack: contextlib.AsyncExitStack
    ) -> None:
        self.state = state
        self.position = position
        self.reader = reader
        self.stack = stack
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.policy: PutPolicy | None = None
        self.bucket = self.key = ""
        self.target: AppendTarget | None = None
        self.writer: OffsetWriter | None = None
        self.spool_path: str | None = None
        self.file_bytes = 0
        self.file_done = False

    # -- checks --------------------------------------------------------------------------
    def _verify(self) -> None:
        token = self.fields.get("token", "").strip()
        if not token:
            raise AppendError(401, "no upload token: the form needs a 'token' field")
        credentials = self.state.config.credentials
        try:
            self.policy = verify_token(token, credentials, int(time.time() * 1000))
            self.bucket, self.key = resolve_object(self.policy, self.fields.get("key") or None)
        except TokenError as exc:
            raise self._token_error(exc) from None
        except ProtocolError as exc:
            raise AppendError(400, str(exc)) from None
        try:
            self.comps = split_key(self.bucket, self.key)
        except UnsafeNameError as exc:
            raise AppendError(400, f"invalid object name: {exc}") from None

    def _peek_policy(self) -> PutPolicy:
        """The verified policy (401 now if the token is bad)."""
        token = self.fields.get("token", "").strip()
        try:
            return verify_token(token, self.state.config.credentials, int(time.time() * 1000))
        except TokenError as exc:
            raise self._token_error(exc) from None

    def _token_error(self, exc: TokenError) -> AppendError:
        hint = ""
        if not self.state.config.credentials:
            hint = " (this server has no credentials: start it with --credentials AK:SK)"
        error = AppendError(401, f"{exc}{hint}")
        self._describe_object(error)
        return error

    def _describe_object(self, error: AppendError) -> None:
        """Add the ``x-wcs-*`` headers to a 401 when the object exists and the token's
        signature holds (expired or out of scope): a forged token learns nothing."""
        token = self.fields.get("token", "").strip()
        try:
            policy = verify_token(token, self.state.config.credentials, 0)  # signature only
            key = self.fields.get("key") or policy.key
            if not key:
                return
            probe = self.state.objects.probe(policy.bucket, key, split_key(policy.bucket, key))
        except NotAppendable as exc:
            error.next_position, error.object_type = exc.size, "Normal"
            return
        except (TokenError, ProtocolError, UnsafeNameError, OSError):
            return
        if probe.exists:
            error.next_position, error.object_type = probe.size, "Appendable"

    def _limit(self) -> int | None:
        """The largest size the object may reach with this append."""
        limits = [self.state.config.max_file_size]
        if self.policy is not None and self.policy.fsize_limit:
            limits.append(self.policy.fsize_limit)
        found = [x for x in limits if x is not None]
        return min(found) if found else None

    def _check_size(self, size: int) -> None:
        limit = self._limit()
        if limit is not None and size > limit:
            error = AppendError(413, f"the object would be {size} bytes, over the limit of {limit} bytes")
            if self.target is not None:  # the object is known and locked: say where it ends
                error.next_position = self.target.start
                error.object_type = "Appendable"
            raise error

    async def _open_target(self) -> None:
        """Verify the token, lock the object, check the position, open it for writing."""
        self._verify()
        store = self.state.objects
        oid = store.object_id(self.bucket, self.key)
        try:
            await self.stack.enter_async_context(store.locked(oid))
        except OSError as exc:
            raise _cannot_write(exc) from None
        try:
            probe = await asyncio.to_thread(store.probe, self.bucket, self.key, self.comps)
        except NotAppendable as exc:
            raise AppendError(
                409, "the object exists and is not appendable", next_position=exc.size, object_type="Normal"
            ) from None
        except UnsafeNameError as exc:
            raise AppendError(400, f"invalid object name: {exc}") from None
        if probe.size != self.position:
            raise AppendError(
                409,
                f"append position {self.position} is not the object's size {probe.size}",
                next_position=probe.size,
                object_type="Appendable" if probe.exists else None,
            )
        try:
            self.target = await asyncio.to_thread(store.begin, probe)
        except UnsafeNameError as exc:
            raise AppendError(400, f"invalid object name: {exc}") from None
        except OSError as exc:
            raise _cannot_write(exc) from None
        if self.target.start != self.position:  # the file had shrunk behind our back
            raise AppendError(409, "the object changed on disk", next_position=self.target.start)

    # -- the file part -------------------------------------------------------------------
    async def _begin_file(self, head: PartHead) -> None:
        if self.writer is not None or self.file_done:
            raise AppendError(400, "more than one file part")
        self.filename = head.filename or ""
        direct = False
        if "token" in self.fields:
            # a bad token is refused at once; the object is known once there is a key
            # (a later "key" field would be missed, so without one the bytes are spooled)
            direct = "key" in self.fields or self._peek_policy().key is not None
        if direct:
            await self._open_target()
            target = self.target
            assert target is not None
            self.writer = OffsetWriter(target.fd, target.start, target.hasher.update)
        else:
            try:
                spool = private_dir(private_dir(self.state.objects.sidecars) / "spool")
                self.spool_path = str(spool / f"{secrets.token_hex(12)}.tmp")
                fd = os.open(self.spool_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except OSError as exc:
                raise _cannot_write(exc) from None
            self.writer = OffsetWriter(fd, 0)

    async def _file_data(self, piece: memoryview) -> None:
        assert self.writer is not None
        self.file_bytes += piece.nbytes
        self.state.stats.add("wcs", "bytes", piece.nbytes)
        self._check_size(self.position + self.file_bytes)
        try:
            await self.writer.write(piece)
        except OSError as exc:
            raise _cannot_write(exc) from None

    async def _end_file(self) -> None:
        assert self.writer is not None
        try:
            await self.writer.flush()
        except OSError as exc:
            raise _cannot_write(exc) from None
        self.file_done = True

    def _copy_spool(self) -> None:
        assert self.writer is not None and self.target is not None
        fd = self.writer.fd
        offset = 0
        while offset < self.file_bytes:
            data = os.pread(fd, min(_SPOOL_READ, self.file_bytes - offset), offset)
            if not data:
                raise OSError("spool file shorter than the part")
            self.state.objects.write(self.target, data)
            offset += len(data)

    # -- the request ---------------------------------------------------------------------
    async def run(self, boundary: str) -> tuple[int, dict[str, str], bytes]:
        stream = PartStream(boundary)
        current: str | None = None  # name of the field being read, "" for the file part
        value = bytearray()
        while (piece := await self.reader.read()) is not None:
            for kind, item in stream.feed(piece):
                if kind == DATA:
                    if current == "":
                        await self._file_data(item)  # type: ignore[arg-type]
                    elif current is not None:
                        value += cast("bytes", item)  # DATA events carry bytes-like pieces
                        if len(value) > FIELD_MAX_BYTES:
                            raise AppendError(
                                400, f"form field {current!r} is longer than {FIELD_MAX_BYTES} bytes"
                            )
                elif kind == HEAD:
                    head: PartHead = item  # type: ignore[assignment]
                    if head.is_file or head.name == "file":
                        current = ""
                        await self._begin_file(head)
                    else:
                        current = head.name or None
                        value = bytearray()
                else:
                    if current == "":
                        await self._end_file()
                    elif current is not None:
                        self.fields[current] = value.decode("utf-8", "replace")
                    current = None
        if not stream.finished:
            raise AppendError(400, "the request body ended before its closing boundary")
        if not self.file_done:
            raise AppendError(400, "no file part: the form needs a 'file' part")
        if self.target is None:  # spooled: the token came after the file
            await self._open_target()
            self._check_size(self.position + self.file_bytes)
            try:
                await asyncio.to_thread(self._copy_spool)
            except OSError as exc:
                raise _cannot_write(exc) from None
        return await self._commit()

    async def _commit(self) -> tuple[int, dict[str, str], bytes]:
        target = self.target
        assert target is not None and self.policy is not None and self.writer is not None
        if self.spool_path is None:  # written straight into the object
            target.written = self.writer.written
        info = {"bucket": self.bucket, "key": self.key, "mimeType": self.fields.get("mimeType")}
        deadline = self.fields.get("deadline", "").strip()
        if deadline:
            info["deadline"] = deadline
        try:
            size, etag = await asyncio.to_thread(self.state.objects.commit, target, info)
        except OSError as exc:
            raise _cannot_write(exc) from None
        self.state.stats.add("wcs", "completed")
        variables = {
            "bucket": self.bucket,
            "key": self.key,
            "fname": self.filename or "",
            "fsize": str(size),
            "mimeType": self.fields.get("mimeType", ""),
            "hash": etag,
            "etag": etag,
            "position": str(self.position),
        }
        variables.update({k: v for k, v in self.fields.items() if k.startswith("x:")})
        fields = render_return_body(self.policy.return_body, variables) if self.policy.return_body else []
        return format_append_success(size, etag, fields)

    def cleanup(self) -> None:
        """Undo whatever is not committed (idempotent)."""
        if self.target is not None and not self.target.closed:
            self.state.objects.rollback(self.target)
        if self.spool_path is not None:
            if self.writer is not None:
                with contextlib.suppress(OSError):
                    os.close(self.writer.fd)
            with contextlib.suppress(OSError):
                os.unlink(self.spool_path)
            self.spool_path = None


async def handle_append(state: ServerState, scope: dict[str, Any], receive: Any, send: Send) -> None:
    """Answer one ``POST /append/<position>``."""
    stats = state.stats
    stats.add("wcs", "requests")
    config = state.config
    reader = request_body(scope, receive, config, state.throttle)
    try:
        try:
            position = parse_append_path(scope["path"])
        except ProtocolError as exc:
            raise AppendError(400, str(exc)) from None
        declared = header(scope, "content-length")
        limit = config.max_request_size
        if (
            limit is not None
            and declared is not None
            and declared.strip().isdigit()
            and int(declared) > limit
        ):
            raise AppendError(
                413, f"request of {int(declared)} bytes is over the server's limit of {limit} bytes"
            )
        try:
            boundary = multipart_boundary(header(scope, "content-type") or "")
        except ProtocolError as exc:
            raise AppendError(400, str(exc)) from None
        async with contextlib.AsyncExitStack() as stack:
            append = _Append(state, position, reader, stack)
            try:
                status, headers, body = await append.run(boundary)
            finally:
                if append.writer is not None:
                    await append.writer.discard()  # no write in flight when rolling back
                await asyncio.to_thread(append.cleanup)
        await respond(send, status, body, headers, content_type="text/plain; charset=utf-8")
        return
    except AppendError as exc:
        error = exc
    except ProtocolError as exc:
        error = AppendError(400, str(exc))
    except BodyTooLarge:
        error = AppendError(413, f"request is over the server's limit of {config.max_request_size} bytes")
    except BodyTimedOut as exc:  # a slow client, not a malformed request: it may try again
        error = AppendError(408, str(exc))
    except BodyCutShort:
        error = AppendError(400, "the request body ended early (the client went away)")
    stats.add("wcs", "errors")
    drained = await reader.drain()
    status, headers, body = error.answer()
    await respond(send, status, body, headers, content_type="application/json", close=not drained)
