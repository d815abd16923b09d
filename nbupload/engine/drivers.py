"""Protocol drivers: the request sequences of ``uploader``, ``plain`` and ``wcs-append``.

Every wire decision comes from :mod:`nbupload.protocols`; this module only sequences
requests, retries and recovery:

- ``uploader``: query (PROTOCOLS.md A1/A2), then the missing ranges as chunks of
  ``chunk_size``, one request in flight per task; after any failure the server is asked
  again what it holds before anything is resent. A first query answer that is not a
  resume answer switches to plain mode (A2, A6); later in a resumable session a bad
  query answer is a retryable error instead (the session is known to exist).
- ``plain``: one multipart POST with the whole file; a retry starts it over.
- ``wcs-append``: appends of ``chunk_size`` at the tracked position; a lost answer is
  recovered by sending the same append again and judging the answer with
  :func:`~nbupload.protocols.wcs.judge_replay` (B5). The etag of everything appended is
  computed while streaming and checked against the server's final hash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..protocols import uploader, wcs
from ..protocols.multipart import Source
from ..protocols.ranges import RangeSet
from .errors import StepFailed
from .retry import Backoff
from .state import TaskError
from .transport import Reply, post, status_failure

if TYPE_CHECKING:
    from .task import Task

__all__ = ["run_driver"]

#: Uploader codes that can never succeed by trying again (PROTOCOLS.md A5).
FATAL_UPLOADER_CODES = frozenset({4001, 4002, 4004, 4008})


def run_driver(task: Task) -> Any:
    opened = task._source()
    if task.total != opened.size:
        from .sources import SourceChangedError

        raise SourceChangedError(f"{task.name}: size is now {opened.size} bytes, was {task.total}")
    cfg = task._engine.config
    backoff = Backoff(cfg.retries, cfg.backoff_base, cfg.backoff_cap, cfg.retry_deadline)
    if task.protocol == "wcs-append":
        driver: _Driver = _WcsDriver(task, opened.source, backoff)
    else:
        driver = _UploaderDriver(task, opened.source, backoff, plain=task.protocol == "plain")
    driver.check_source = opened.check_unchanged
    return driver.run()


class _Driver:
    #: Raises SourceChangedError once the file differs from when the task started. Called
    #: after each piece is read and before it is sent, so no byte read after a change (the
    #: kernel updates mtime before the data) ever goes out: never a silently mixed file.
    check_source: Any = staticmethod(lambda: None)

    def __init__(self, task: Task, source: Source, backoff: Backoff) -> None:
        self.task = task
        self.source = source
        self.backoff = backoff
        self.engine = task._engine
        self.cfg = self.engine.config

    def send(self, url: str, headers: dict[str, str], body: Any, file_len: int = 0, on_file=None) -> Reply:
        task = self.task
        task.note_attempt()

        def counted(view: memoryview) -> None:
            task.add_sent(view.nbytes)
            if on_file is not None:
                on_file(view)

        try:
            return post(
                self.engine._client(),
                url,
                headers={**task.spec.headers, **headers},
                body=body,
                timeout=self.engine._timeout(),
                check=self.check,
                stall_timeout=self.cfg.stall_timeout,
                file_len=file_len,
                on_file=counted,
            )
        finally:
            task.end_request()

    def check(self) -> None:
        self.task.check()
        self.check_source()

    def failed(self, exc: StepFailed) -> None:
        """Back off after a failed step, or give up with its error."""
        if not exc.error.retryable:
            raise exc
        delay = self.backoff.next_delay(exc.retry_after)
        if delay is None:
            tries = self.backoff.failures
            raise StepFailed(
                TaskError(
                    f"{exc.error.message} (gave up after {tries} tries without progress)",
                    code=exc.error.code,
                    status=exc.error.status,
                    retryable=True,
                )
            )
        self.task.report_error(exc.error)
        self.task.sleep(delay)


class _UploaderDriver(_Driver):
    def __init__(self, task: Task, source: Source, backoff: Backoff, plain: bool) -> None:
        super().__init__(task, source, backoff)
        self.force_plain = plain

    @property
    def spec(self):
        return self.task.spec

    def run(self) -> Any:
        task = self.task
        mode = "plain" if self.force_plain else None
        known_resumable = task.extra.get("mode") == "resumable"
        while True:
            try:
                if mode != "plain":
                    answer = self.query(known_resumable)
                    if answer.resumable:
                        mode = "resumable"
                        if not known_resumable:
                            known_resumable = True
                            task.extra["mode"] = "resumable"
                            self.engine._journal_save(task)
                        task.set_acked_exact(answer.ranges_for(self.spec.field_name).clip(task.total))
                    else:
                        mode = "plain"
                        task.extra["mode"] = "plain"
                        task.extra["plain_reason"] = answer.reason
                task.set_state_uploading()
                if mode == "plain":
                    return self.plain()
                return self.chunks(answer.ranges_for(self.spec.field_name))
            except StepFailed as exc:
                self.failed(exc)
                if mode == "plain" and not self.force_plain:
                    mode = None  # ask again: the server may have been restarted with resume

    def query(self, known_resumable: bool) -> uploader.QueryAnswer:
        headers, body = uploader.prepare_query(self.spec.boundary)
        reply = self.send(self.spec.url, headers, body)
        answer = uploader.process_query_answer(reply.status, reply.body, self.spec.boundary)
        if answer.resumable:
            return answer
        later = reply.status in (408, 429) or reply.status >= 500
        if later or known_resumable:
            # "Try later", or a session known to exist: not a reason to restart in plain mode.
            fatal = reply.status in (401, 403, 404, 405)
            raise StepFailed(
                TaskError(f"query failed: {answer.reason}", status=reply.status, retryable=not fatal),
                retry_after=reply.retry_after,
            )
        return answer

    def _judge(self, reply: Reply) -> uploader.ChunkAnswer:
        answer = uploader.process_chunk_answer(reply.status, reply.body)
        if answer.ok:
            return answer
        if 300 <= reply.status < 400:
            where = reply.headers.get("location", "?")
            raise StepFailed(TaskError(f"the server redirects to {where}: use that URL", status=reply.status))
        failure = status_failure(reply, answer.text, answer.code)
        if answer.code in FATAL_UPLOADER_CODES or reply.status in (401, 403, 404, 413):
            failure.error = TaskError(answer.text, answer.code, reply.status, retryable=False)
        elif answer.code == uploader.ErrorCode.PARTIAL_UPLOAD or answer.code in (4006, 4007):
            failure.error = TaskError(answer.text, answer.code, reply.status, retryable=True)
        raise failure

    def plain(self) -> Any:
        spec = self.spec
        body = uploader.prepare_plain(
            spec.boundary, self.source, name=spec.field_name, filename=spec.filename, fields=spec.fields,
            content_type=spec.mime or "application/octet-stream", piece_size=self.cfg.piece_size,
        )
        reply = self.send(spec.url, {}, body, file_len=self.source.size)
        answer = self._judge(reply)
        self.task.acknowledge(RangeSet([(0, self.task.total)]))
        return {"mode": "plain", "status": answer.status, **dict(answer.extra)}

    def chunks(self, held: RangeSet) -> Any:
        task, spec = self.task, self.spec
        total = task.total
        missing = held.missing(total)
        pieces = list(missing.pieces(spec.chunk_size)) if total else []
        last: uploader.ChunkAnswer | None = None
        if total == 0:  # nothing to slice: one empty chunk tells the server the file exists
            body = uploader.prepare_chunk(spec.boundary, self.source, 0, 0, name=spec.field_name,
                                          filename=spec.filename, fields=spec.fields,
                                          content_type=spec.mime or "application/octet-stream")
            last = self._judge(self.send(spec.url, {}, body))
        for piece in pieces:
            body = uploader.prepare_chunk(
                spec.boundary, self.source, piece.start, piece.end, name=spec.field_name,
                filename=spec.filename, fields=spec.fields,
                content_type=spec.mime or "application/octet-stream", piece_size=self.cfg.piece_size,
            )
            reply = self.send(spec.url, {}, body, file_len=len(piece))
            last = self._judge(reply)
            got = RangeSet([(piece.start, piece.end)])
            if last.held is not None:
                got = got | last.held
            task.acknowledge(got)
            self.backoff.progress()
        result: dict[str, Any] = {"mode": "resumable", "boundary": spec.boundary}
        if last is not None:
            result.update(dict(last.extra))
            # False when the server defers assembling (e.g. an abandoned request is still open).
            result["complete"] = last.complete
        return result


def _fork(hasher: wcs.EtagHasher) -> wcs.EtagHasher:
    """A copy of a streaming etag (hashlib objects copy; the class has no copy())."""
    twin = wcs.EtagHasher()
    twin._block = hasher._block.copy()
    twin._block_len = hasher._block_len
    twin._blocks = list(hasher._blocks)
    twin.size = hasher.size
    return twin


class _WcsDriver(_Driver):
    def run(self) -> Any:
        task, spec = self.task, self.task.spec
        creds = spec.credentials
        if creds is None:
            raise StepFailed(TaskError("wcs-append needs credentials: a token, or access key + secret key + scope"))
        base = spec.url.rstrip("/")
        total = task.total
        position = int(task.extra.get("position", 0))
        committed = self.rehash(position)
        task.set_acked_exact(RangeSet([(0, position)]) if position else RangeSet())
        task.set_state_uploading()
        final_hash: str | None = None
        refreshed = False
        first = True
        while first or position < total:
            first = False
            length = min(spec.chunk_size, total - position)
            twin = _fork(committed)
            body = wcs.prepare_append(
                creds.current(), self.source, position, length, key=spec.key, mime=spec.mime,
                variables=spec.fields, filename=spec.filename, piece_size=self.cfg.piece_size,
            )
            try:
                reply = self.send(base + wcs.append_path(position), {}, body, file_len=length, on_file=twin.update)
            except StepFailed as exc:
                first = True  # the same append again (B5)
                self.failed(exc)
                continue
            answer = wcs.process_append_answer(reply.status, reply.headers.multi_items(), reply.body)
            verdict = wcs.judge_replay(position, length, answer)
            if answer.ok:
                if answer.next_position is not None and answer.next_position != position + length:
                    raise StepFailed(TaskError(
                        f"the server says the object is {answer.next_position} bytes after appending "
                        f"{length} at {position}: someone else is appending to it", code="conflict",
                        status=reply.status))
                if twin.size != position + length:  # the server answered before reading it all
                    twin = self.rehash(position + length)
                committed = twin
                final_hash = answer.hash
            elif verdict.landed:
                committed = self.rehash_chunk(committed, position, length)
                final_hash = None
            elif verdict.conflict:
                raise StepFailed(TaskError(
                    f"conflict: this upload expected the object at {position} bytes but the server has "
                    f"{verdict.next_position}; someone else appended to {creds.scope} (nothing was overwritten)",
                    code="409", status=409))
            else:
                first = True
                self.failed(self.append_failure(reply, answer, creds, refreshed))
                if reply.status == 401:
                    refreshed = True
                continue
            refreshed = False
            position += length
            task.extra["position"] = position
            task.acknowledge(RangeSet([(0, position)]) if position else RangeSet())
            self.backoff.progress()
        local = committed.etag()
        if final_hash is None:
            final_hash = self.probe_hash(base, creds, total)
        if final_hash is not None and final_hash != local:
            raise StepFailed(TaskError(
                f"hash mismatch: the server's object has etag {final_hash}, the data sent has {local}",
                code="hash-mismatch"))
        bucket, scoped_key = creds.bucket_key
        return {"hash": local, "verified": final_hash is not None, "position": position,
                "bucket": bucket, "key": spec.key or scoped_key}

    def append_failure(self, reply: Reply, answer: wcs.AppendAnswer, creds, refreshed: bool) -> StepFailed:
        if reply.status == 409 and answer.object_type == "Normal":
            return StepFailed(TaskError("the object exists and is not appendable (x-wcs-object-type: Normal)",
                                        code=answer.code or "409", status=409))
        if reply.status == 401 and not refreshed and creds.refresh():
            return StepFailed(TaskError(answer.text, code=answer.code, status=401, retryable=True))
        if reply.status in (400, 401, 403, 404, 409, 413):
            return StepFailed(TaskError(answer.text, code=answer.code or str(reply.status), status=reply.status))
        return status_failure(reply, answer.text, answer.code)

    def rehash(self, end: int) -> wcs.EtagHasher:
        """The etag state of ``source[0:end]`` (after a restart or a replayed append)."""
        hasher = wcs.EtagHasher()
        step = 1 << 20
        for off in range(0, end, step):
            self.task.check()
            hasher.update(self.source.pread(min(step, end - off), off))
        return hasher

    def rehash_chunk(self, committed: wcs.EtagHasher, start: int, length: int) -> wcs.EtagHasher:
        twin = _fork(committed)
        step = 1 << 20
        for off in range(start, start + length, step):
            twin.update(self.source.pread(min(step, start + length - off), off))
        return twin

    def probe_hash(self, base: str, creds, total: int) -> str | None:
        """The last append's answer was lost: an empty append at the end returns the hash."""
        body = wcs.prepare_append(creds.current(), _Empty(), 0, 0, key=self.task.spec.key,
                                  mime=self.task.spec.mime, filename=self.task.spec.filename)
        for _ in range(3):
            try:
                reply = self.send(base + wcs.append_path(total), {}, body)
            except StepFailed as exc:
                self.failed(exc)
                continue
            answer = wcs.process_append_answer(reply.status, reply.headers.multi_items(), reply.body)
            return answer.hash if answer.ok else None
        return None


class _Empty:
    size = 0

    def pread(self, size: int, offset: int) -> bytes:
        return b""

