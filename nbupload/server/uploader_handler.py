"""``POST /upload``: the DCloud uploader protocol (query, resumable chunks, plain uploads).

Every wire decision comes from :mod:`nbupload.protocols.uploader`; this module does the
I/O. A multipart request is read part by part as it arrives: a chunk (a file part with a
``range`` parameter) is written at its offset in the session's partial file, a plain file
part into a temp file, a data field is kept as the session's last value. When a field's
held ranges cover ``[0, total)`` the partial file is renamed to ``ROOT/<name>``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from ..protocols.errors import ProtocolError, TokenError
from ..protocols.ranges import RangeSet, parse_range_attr
from ..protocols.uploader import ErrorCode, format_error, format_ok, format_query_answer, parse_query_request
from ..protocols.wcs import PutPolicy, verify_token
from .body import BodyCutShort, BodyReader, BodyTooLarge, request_body
from .diskio import OffsetWriter
from .http import Send, header, respond
from .names import UnsafeNameError, has_denied_extension, replace_into, sanitize_relpath, split_key
from .parts import DATA, HEAD, PartHead, PartStream, multipart_boundary
from .sessions import FileEntry, Session
from .state import ServerState

__all__ = ["UploadError", "handle_upload"]

QUERY_MAX_BYTES = 16 * 1024
FIELD_MAX_BYTES = 64 * 1024
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class UploadError(Exception):
    """An uploader failure answer: seed error code (or 400), message, HTTP status."""

    def __init__(self, code: int, message: str | None = None, status: int | None = None) -> None:
        super().__init__(message or "")
        self.code = code
        self.message = message
        self.status = status

    def answer(self) -> tuple[int, bytes]:
        return format_error(self.code, self.message, status=self.status)


def _malformed(message: str) -> UploadError:
    return UploadError(400, message, status=400)


def _write_error(exc: OSError, what: str) -> UploadError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return UploadError(ErrorCode.CANNOT_WRITE, f"Upload failed: Cannot write to disk ({what}: {reason})")


def _no_temp_dir(exc: OSError) -> UploadError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return UploadError(ErrorCode.NO_TEMP_DIR, f"Cannot upload file: No temp directory ({reason})")


def _unauthorized(message: str) -> UploadError:
    return UploadError(401, message, status=401)


def upload_token(scope: dict[str, Any]) -> str | None:
    """The request's upload token: ``Authorization: UpToken <token>`` or ``?token=`` (A9)."""
    auth = header(scope, "authorization")
    if auth is not None:
        kind, _, value = auth.strip().partition(" ")
        if kind.lower() == "uptoken" and value.strip():
            return value.strip()
    query = scope.get("query_string", b"").decode("latin-1")
    values = parse_qs(query).get("token")
    return values[0].strip() if values and values[0].strip() else None


def check_upload_token(state: ServerState, scope: dict[str, Any]) -> PutPolicy:
    """The verified policy of the request's token, or a 401 :class:`UploadError` saying why
    (never quoting the token)."""
    token = upload_token(scope)
    if token is None:
        raise _unauthorized("an upload token is required: send 'Authorization: UpToken <token>' or ?token=")
    try:
        policy = verify_token(token, state.config.credentials, int(time.time() * 1000))
    except TokenError as exc:
        raise _unauthorized(f"invalid upload token: {exc}") from None
    try:
        split_key(policy.bucket, policy.key or "x")
    except UnsafeNameError as exc:
        raise _unauthorized(f"the token's scope is not a folder under the root: {exc}") from None
    return policy


def _open_temp(rx: _Receiver, prefix: str) -> tuple[Path, OffsetWriter]:
    """A new private temp file ``ROOT/.partial/<prefix>-<random>.tmp`` and its writer, for a
    part received whole before it is moved into place (4006 or 4002 when impossible)."""
    try:
        partial = rx.state.sessions.ensure_partial_dir()
    except OSError as exc:
        raise _no_temp_dir(exc) from None
    tmp = partial / f"{prefix}-{secrets.token_hex(12)}.tmp"
    try:
        fd = os.open(tmp, _OPEN_FLAGS | os.O_EXCL, 0o600)
    except OSError as exc:
        raise _write_error(exc, "creating a temp file") from None
    return tmp, OffsetWriter(fd, 0)


class _FieldPart:
    def __init__(self, name: str) -> None:
        self.name = name
        self.value = bytearray()

    async def data(self, piece: memoryview) -> None:
        self.value += piece
        if len(self.value) > FIELD_MAX_BYTES:
            raise _malformed(f"form field {self.name!r} is longer than {FIELD_MAX_BYTES} bytes")

    async def end(self) -> dict[str, Any] | None:
        return None

    async def abort(self) -> None:
        pass


class _SkipPart(_FieldPart):
    """A file input left empty by a browser (``filename=""``, no data)."""

    async def data(self, piece: memoryview) -> None:
        pass


class _ChunkPart:
    """One ``range`` of a session's file field, written at its offset.

    The bytes are written outside any lock (chunks land at their own offsets; overlapping
    chunks hold the same bytes); the held ranges, completion and the move into place are
    decided at the end under the session's cross-process lock.
    """

    def __init__(self, rx: _Receiver, session: Session, entry: FileEntry, start: int, end: int) -> None:
        self.rx = rx
        self.session = session
        self.entry = entry
        self.start = start
        self.end_ = end
        held = entry.held
        self.duplicate = sum(max(0, min(e, end) - max(s, start)) for s, e in held.spans)
        self.received = 0
        self.writer: OffsetWriter | None = None
        if not entry.complete:
            try:
                fd = os.open(session.part_path(entry), _OPEN_FLAGS, 0o600)
            except (FileNotFoundError, NotADirectoryError) as exc:
                raise _no_temp_dir(exc) from None
            except OSError as exc:
                raise _write_error(exc, "opening the partial file") from None
            self.writer = OffsetWriter(fd, start)

    async def data(self, piece: memoryview) -> None:
        n = piece.nbytes
        if self.received + n > self.end_ - self.start:
            raise _malformed(
                "file part is longer than its range "
                f"{self.start}-{self.end_} ({self.end_ - self.start} bytes)"
            )
        self.received += n
        self.rx.state.stats.add("uploader", "bytes", n)
        if self.writer is not None:
            try:
                await self.writer.write(piece)
            except OSError as exc:
                raise _write_error(exc, "writing a chunk") from None

    def _close(self) -> None:
        if self.writer is not None and self.writer.fd >= 0:
            os.close(self.writer.fd)
            self.writer.fd = -1

    async def end(self) -> dict[str, Any]:
        want = self.end_ - self.start
        if self.received != want:
            raise UploadError(
                ErrorCode.PARTIAL_UPLOAD,
                f"File only partially uploaded: the part holds {self.received} bytes, "
                f"its range {self.start}-{self.end_} says {want}",
            )
        if self.writer is not None:
            try:
                await self.writer.flush()
            except OSError as exc:
                raise _write_error(exc, "writing a chunk") from None
        self._close()  # the bytes are in the file (and, on NFS, flushed by the close) first
        stats = self.rx.state.stats
        stats.add("uploader", "duplicate_bytes", self.duplicate)
        rx = self.rx
        async with rx.transaction() as session:
            entry = session.files.get(self.entry.name)
            if entry is None or entry.total != self.entry.total:  # swept meanwhile: start it again
                entry = session.files[self.entry.name] = FileEntry(
                    self.entry.name, self.entry.filename, self.entry.total
                )
            if entry.complete:
                if self.writer is not None:
                    # completed by another request: an open that came after its move created
                    # a stray partial file (the real one is in place now)
                    with contextlib.suppress(OSError):
                        os.unlink(session.part_path(entry))
            else:
                entry.held = entry.held.add(self.start, self.end_)
                rx.finalize(session, entry)
            rx.save(session)
        info: dict[str, Any] = {"name": entry.name, "range": str(entry.held), "complete": entry.complete}
        if entry.complete:
            info["stored"] = entry.stored
        return info

    async def abort(self) -> None:
        if self.writer is not None:
            await self.writer.discard()
        self._close()


class _WholePart:
    """A chunk that holds a whole file (``range="0-N/N"``) of a session not on disk yet.

    The common case of many small files: one chunk each. Rather than recording an empty
    entry first (a lock, a ``session.json`` written) and moving a partial file at the end,
    the bytes go to a private temp file (as a plain part's do). At the end, if the session
    still does not exist, the file is moved into place and the session created whole
    without a lock (:meth:`_create_session`); otherwise, under the session's cross-process
    lock, the file is moved into place and the session recorded whole in one
    ``session.json`` write. The answer leaves only after both, as on the chunk path, so
    what is acknowledged is on disk the same way.

    Another request of the same session may have come meanwhile (a retry, another
    process): its entry is re-read under the lock and checked as :meth:`_Receiver._begin`
    checks it; if it is complete already, these bytes (the same, A3) are dropped; if it
    holds part of the file, this whole copy completes it and the partial file goes (a chunk
    still writing into it finds the entry complete at its end, as it would after a move).
    (Only when that request created the session in the instant between this one's last
    check and its own creation is the file already in place when the entry is checked.)
    A crash before the end leaves only the temp file, which the sweeper removes; the
    session is then unknown and the client sends the file again.
    """

    def __init__(self, rx: _Receiver, name: str, filename: str, total: int) -> None:
        self.rx = rx
        self.name = name
        self.filename = filename
        self.total = total
        self.received = 0
        self.held = RangeSet([(0, total)])
        self.tmp, self.writer = _open_temp(rx, "whole")
        self.open = True
        self.moved = False  # the temp file is in place (else it is removed at the end)

    async def data(self, piece: memoryview) -> None:
        n = piece.nbytes
        if self.received + n > self.total:
            raise _malformed(f"file part is longer than its range 0-{self.total} ({self.total} bytes)")
        self.received += n
        self.rx.state.stats.add("uploader", "bytes", n)
        try:
            await self.writer.write(piece)
        except OSError as exc:
            raise _write_error(exc, "writing a chunk") from None

    def _close(self) -> None:
        if self.open:
            self.open = False
            os.close(self.writer.fd)

    async def end(self) -> dict[str, Any]:
        if self.received != self.total:
            raise UploadError(
                ErrorCode.PARTIAL_UPLOAD,
                f"File only partially uploaded: the part holds {self.received} bytes, "
                f"its range 0-{self.total} says {self.total}",
            )
        try:
            await self.writer.flush()
        except OSError as exc:
            raise _write_error(exc, "writing a chunk") from None
        self._close()
        rx = self.rx
        try:
            if not rx.state.sessions.exists(rx.boundary) and self._create_session():
                return {"name": self.name, "range": str(self.held), "complete": True, "stored": self.filename}
            async with rx.transaction() as session:
                entry = session.files.get(self.name)
                known = entry is not None
                if entry is None:
                    entry = session.files[self.name] = FileEntry(self.name, self.filename, self.total)
                else:
                    rx.check_entry(entry, self.filename, self.total)
                if entry.complete:
                    rx.state.stats.add("uploader", "duplicate_bytes", self.total)
                else:
                    if not self.moved:
                        try:
                            replace_into(rx.state.root_fd, self.tmp, self.filename)
                        except OSError as exc:
                            raise _write_error(exc, f"storing {self.filename!r}") from None
                        self.moved = True
                    if known:  # part of it may be held in a partial file: not needed now
                        with contextlib.suppress(OSError):
                            os.unlink(session.part_path(entry))
                    entry.held = self.held
                    entry.complete = True
                    entry.stored = self.filename
                    rx.state.stats.add("uploader", "completed")
                rx.save(session)
                rx.session = session
        finally:
            if not self.moved:
                with contextlib.suppress(OSError):
                    os.unlink(self.tmp)
        return {"name": entry.name, "range": str(entry.held), "complete": True, "stored": entry.stored}

    def _create_session(self) -> bool:
        """The session does not exist: store the file, then create the session holding it
        whole without taking a lock (:meth:`SessionStore.stage`: a private directory renamed
        into place, a third of the system calls of the locked way). The file goes into place
        first, so the session never lists a file that is not there (a crash in between
        leaves the file and no session: the client, told nothing, sends it again). ``False``
        when the session appeared meanwhile (a concurrent request of it): the file is in
        place, and the caller records it under the lock."""
        rx = self.rx
        store = rx.state.sessions
        session = Session(boundary=rx.boundary, directory=store.session_dir(rx.boundary))
        session.data.update(rx.fields)  # the data fields sent before the file (A3 sends them first)
        session.files[self.name] = FileEntry(
            self.name, self.filename, self.total, self.held, complete=True, stored=self.filename
        )
        try:
            staging = store.stage(session)
        except OSError as exc:
            raise _no_temp_dir(exc) from None
        published = False
        try:
            try:
                replace_into(rx.state.root_fd, self.tmp, self.filename)
            except OSError as exc:
                raise _write_error(exc, f"storing {self.filename!r}") from None
            self.moved = True
            try:
                published = store.publish(staging, rx.boundary)
            except OSError as exc:
                raise _write_error(exc, "saving the session") from None
        finally:
            if not published:
                store.discard(staging)
        if published:
            rx.state.stats.add("uploader", "completed")
            rx.session = session
            rx.fields_saved = dict(rx.fields)
        return published

    async def abort(self) -> None:
        await self.writer.discard()
        self._close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


class _PlainPart:
    """A whole file without ``range``: into a temp file, then renamed into place."""

    def __init__(self, rx: _Receiver, name: str, filename: str) -> None:
        self.rx = rx
        self.name = name
        self.filename = filename
        self.tmp, self.writer = _open_temp(rx, "plain")
        self.open = True

    async def data(self, piece: memoryview) -> None:
        limit = self.rx.state.config.max_file_size
        size = self.writer.position + piece.nbytes
        if limit is not None and size > limit:
            raise UploadError(
                ErrorCode.FILE_TOO_LARGE,
                f"File exceeded max_file_size: {self.filename!r} is over the server's limit of {limit} bytes",
            )
        self.rx.state.stats.add("uploader", "bytes", piece.nbytes)
        try:
            await self.writer.write(piece)
        except OSError as exc:
            raise _write_error(exc, "writing a file") from None

    async def end(self) -> dict[str, Any]:
        try:
            await self.writer.flush()
            os.close(self.writer.fd)
            self.open = False
            replace_into(self.rx.state.root_fd, self.tmp, self.filename)
        except OSError as exc:
            await self.abort()
            raise _write_error(exc, f"storing {self.filename!r}") from None
        self.rx.state.stats.add("uploader", "completed")
        size = self.writer.written
        return {
            "name": self.name,
            "range": str(RangeSet([(0, size)])),
            "complete": True,
            "stored": self.filename,
        }

    async def abort(self) -> None:
        await self.writer.discard()
        if self.open:
            self.open = False
            os.close(self.writer.fd)
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


class _Receiver:
    """One multipart request of session ``boundary``, read part by part."""

    def __init__(
        self, state: ServerState, boundary: str, reader: BodyReader, policy: PutPolicy | None = None
    ) -> None:
        self.state = state
        self.boundary = boundary
        self.reader = reader
        self.policy = policy
        self.session: Session | None = None
        self.fields: dict[str, str] = {}
        #: the data fields already in the session as saved (its creation by a whole chunk)
        self.fields_saved: dict[str, str] | None = None

    def save(self, session: Session) -> None:
        try:
            self.state.sessions.save(session)
        except OSError as exc:
            raise _write_error(exc, "saving the session") from None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        """The session under its cross-process lock (:meth:`SessionStore.transaction`)."""
        async with contextlib.AsyncExitStack() as stack:
            try:
                session = await stack.enter_async_context(self.state.sessions.transaction(self.boundary))
            except OSError as exc:
                raise _no_temp_dir(exc) from None
            yield session

    def finalize(self, session: Session, entry: FileEntry) -> None:
        """Move a whole file into place, once, as soon as its held ranges cover it (under the
        session's lock, so exactly one process of those sharing the root does it).

        A chunk of it may still be open then, in this process or another (typically a
        retry's first attempt, stuck on a connection the client gave up on): waiting for it
        could mean waiting forever, so it is not waited for. Its bytes land in the moved
        file at their offset, and they are the same bytes (A3: overlapping chunks agree).
        """
        if entry.complete or not entry.held.covers(entry.total):
            return
        try:
            replace_into(self.state.root_fd, session.part_path(entry), entry.filename)
        except OSError as exc:
            raise _write_error(exc, f"storing {entry.filename!r}") from None
        entry.complete = True
        entry.stored = entry.filename
        self.state.stats.add("uploader", "completed")

    def _place(self, filename: str) -> str:
        """Where a file lands, relative to the root: under the token's folder, if any."""
        policy = self.policy
        if policy is None:
            return filename
        if policy.key is not None and filename != policy.key:
            raise _unauthorized(f"the token's scope {policy.scope!r} does not cover the file {filename!r}")
        return f"{policy.bucket}/{filename}"

    async def _begin(self, head: PartHead) -> Any:
        if not head.is_file:
            if not head.name:
                raise _malformed("a form field without a name")
            return _FieldPart(head.name)
        rng = head.params.get("range")
        if not head.filename and rng is None:
            return _SkipPart(head.name or "")
        name = head.name or "file"
        filename = self._place(sanitize_relpath(head.filename or name))
        config = self.state.config
        if has_denied_extension(filename, config.deny_extensions):
            ext = next(e for e in config.deny_extensions if filename.lower().endswith(e))
            raise UploadError(
                ErrorCode.STOPPED_BY_RULE,
                f"File upload stopped by a server-side rule: {ext} files are not accepted",
            )
        if rng is None:
            return _PlainPart(self, name, filename)
        try:
            start, end, total = parse_range_attr(rng)
        except ProtocolError as exc:
            raise _malformed(str(exc)) from None
        if config.max_file_size is not None and total > config.max_file_size:
            raise UploadError(
                ErrorCode.FILE_TOO_LARGE,
                f"File exceeded max_file_size: {total} bytes is over "
                f"the server's limit of {config.max_file_size} bytes",
            )
        if start == 0 and end == total and not self.state.sessions.exists(self.boundary):
            return _WholePart(self, name, filename, total)
        async with self.transaction() as session:
            entry = session.files.get(name)
            if entry is None:
                entry = session.files[name] = FileEntry(name, filename, total)
                self.save(session)
            else:
                self.check_entry(entry, filename, total)
            self.session = session
            return _ChunkPart(self, session, entry, start, end)

    def check_entry(self, entry: FileEntry, filename: str, total: int) -> None:
        """Refuse a part that contradicts what the session already has for its field."""
        name = entry.name
        if self.policy is not None and entry.filename.rpartition("/")[0] != filename.rpartition("/")[0]:
            raise _unauthorized(
                f"field {name!r} of this session goes to {entry.filename!r}, out of the token's scope"
            )
        if entry.total != total:
            raise _malformed(
                f"range total {total} differs from the {entry.total} bytes this session already has "
                f"for field {name!r}"
            )
        if entry.filename != filename:
            raise _malformed(
                f"filename {filename!r} differs from the {entry.filename!r} this session already has "
                f"for field {name!r}"
            )

    async def run(self) -> dict[str, Any]:
        stream = PartStream(self.boundary)
        results: list[dict[str, Any]] = []
        part: Any = None
        try:
            while (piece := await self.reader.read()) is not None:
                for kind, value in stream.feed(piece):
                    if kind == DATA:
                        await part.data(value)
                    elif kind == HEAD:
                        part = await self._begin(value)  # type: ignore[arg-type]
                    else:
                        info = await part.end()
                        if isinstance(part, _FieldPart) and not isinstance(part, _SkipPart):
                            self.fields[part.name] = part.value.decode("utf-8", "replace")
                        elif info is not None:
                            results.append(info)
                        part = None
            if not stream.finished:
                raise UploadError(
                    ErrorCode.PARTIAL_UPLOAD,
                    "File only partially uploaded: the body ended before its closing boundary",
                )
        except BaseException:
            if part is not None:
                await part.abort()
            raise
        if (
            self.fields
            and self.fields != self.fields_saved
            and (self.session is not None or self.state.sessions.get(self.boundary) is not None)
        ):
            async with self.transaction() as session:
                session.data.update(self.fields)
                self.save(session)
        if not results:
            raise UploadError(ErrorCode.NO_FILE, "No file uploaded: the request has no file part")
        answer = dict(results[-1])
        answer.pop("name", None)
        if len(results) > 1:
            answer["files"] = results
        return answer


def _query_answer(state: ServerState, boundary: str) -> bytes:
    session = state.sessions.get(boundary)
    if session is None:
        return format_query_answer(boundary, {}, [])
    files = {name: entry.held for name, entry in session.files.items()}
    return format_query_answer(boundary, files, list(session.data))


async def handle_upload(state: ServerState, scope: dict[str, Any], receive: Any, send: Send) -> None:
    """Answer one ``POST /upload``."""
    stats = state.stats
    stats.add("uploader", "requests")
    config = state.config
    reader = request_body(scope, receive, config, state.throttle)
    content_type = header(scope, "content-type") or ""
    kind = content_type.split(";")[0].strip().lower()
    try:
        policy = check_upload_token(state, scope) if config.require_token else None
        declared = header(scope, "content-length")
        limit = config.max_request_size
        if (
            limit is not None
            and declared is not None
            and declared.strip().isdigit()
            and int(declared) > limit
        ):
            raise UploadError(
                ErrorCode.REQUEST_TOO_LARGE,
                "File exceeded upload_max_filesize: the request's "
                f"{int(declared)} bytes are over the server's "
                f"per-request limit of {limit} bytes",
            )
        if kind == "application/x-www-form-urlencoded":
            try:
                body = await reader.read_all(QUERY_MAX_BYTES)
            except BodyTooLarge:
                raise _malformed(f"a query body is at most {QUERY_MAX_BYTES} bytes") from None
            boundary = parse_query_request(body)
            await respond(send, 200, _query_answer(state, boundary))
            return
        if kind == "multipart/form-data":
            boundary = multipart_boundary(content_type)
            answer = await _Receiver(state, boundary, reader, policy).run()
            await respond(send, 200, format_ok(**answer))
            return
        raise _malformed(
            "expected an uploader query (application/x-www-form-urlencoded) "
            "or an upload (multipart/form-data)"
        )
    except UploadError as exc:
        error = exc
    except ProtocolError as exc:
        error = _malformed(str(exc))
    except BodyTooLarge:
        error = UploadError(
            ErrorCode.REQUEST_TOO_LARGE,
            f"File exceeded upload_max_filesize: the request is over the server's per-request limit of "
            f"{config.max_request_size} bytes",
        )
    except BodyCutShort:
        error = UploadError(ErrorCode.PARTIAL_UPLOAD, "File only partially uploaded: the client went away")
    stats.add("uploader", "errors")
    drained = await reader.drain()
    status, body = error.answer()
    await respond(send, status, body, close=not drained)
