"""Protocol drivers: the request sequences of ``uploader``, ``plain`` and ``wcs-append``.

Every wire decision comes from :mod:`nbupload.protocols`; this module only sequences
requests, retries and recovery, on a :class:`~nbupload.engine.run.RunContext` and a
:class:`~nbupload.engine.run.RunHandle` (it never sees a task or the engine):

- ``uploader``: query (docs/protocols.md, uploader), then the missing ranges as chunks, on up
  to ``streams`` concurrent streams (the protocol lets chunks arrive out of order and
  concurrently). Each stream has its own keep-alive connection and takes the next missing
  range nobody is sending. After a failure on one stream, that stream backs off, asks the
  server what it holds and goes on with what is still missing; the other streams keep going
  unless the failure is fatal. The task is done only when the server said the file is
  complete or its held ranges cover ``[0, total)``: if the last answers do not say so, the
  server is asked again and whatever it lacks is sent again. A first query answer that is
  not a resume answer switches to plain mode; later in a resumable session a bad query
  answer is a retryable error instead (the session is known to exist). A failing query
  gives the worker back (:class:`~nbupload.engine.run.Reschedule`) instead of sleeping in it.
  A multi-file session (PROTOCOLS.md A7) is the same driver over a
  :class:`~nbupload.engine.multifile.FieldLayout`: the task's bytes are the fields end to end,
  every chunk is cut inside one field and carries that field's own range, a free stream takes
  the field with the fewest chunks in flight (fields move together, interleaved), and the
  session is done when every field is complete; zero-byte fields go as one empty chunk each.
- ``plain``: one multipart POST with the whole file (every file of a session); a retry
  starts it over.
- ``wcs-append``: appends at the tracked position, one in flight (positions are serial); a
  lost answer is recovered by sending the same append again and judging the answer with
  :func:`~nbupload.protocols.wcs.judge_replay`. The etag of everything appended is computed
  while streaming and checked against the server's final hash.

Chunk sizes adapt (:class:`ChunkSizer`): ``chunk_size`` is where a task starts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..errors import Interrupted, StepFailed
from ..protocols import uploader, wcs
from ..protocols.ranges import ByteRange, RangeSet
from ..protocols.verdict import VerdictKind
from .multifile import ConcatSource, FieldLayout
from .run import Reschedule, RunContext, RunHandle
from .spec import SessionFile
from .state import TaskError
from .transport import Reply, StreamClient, post, preconnect, status_failure

__all__ = ["ChunkSizer", "run_driver"]

_E = uploader.ErrorCode
#: How many times a server may leave a fully sent file unassembled before the task fails.
ASSEMBLY_ROUNDS = 3


def run_driver(ctx: RunContext, handle: RunHandle) -> Any:
    """Run one attempt of the task to its end: the result, or an exception."""
    driver: _Driver
    if ctx.spec.protocol == "wcs-append":
        driver = _WcsDriver(ctx, handle)
    else:
        driver = _UploaderDriver(ctx, handle, plain=ctx.spec.protocol == "plain")
    sc = ctx.clients.acquire()
    driver.main = sc
    try:
        return driver.run()
    finally:
        ctx.clients.release(sc)


class ChunkSizer:
    """How big the next chunk is.

    Starts at ``start``; grows after a full-size request in which more than
    ``OVERHEAD_SHARE`` of the time went outside writing the body (connecting, waiting for the
    answer: the round trip a bigger chunk pays once for more bytes), up to ``cap``. It grows by
    the power of two (at most ``MAX_GROWTH``) that would bring that share down to
    ``OVERHEAD_SHARE`` were the body time to scale with the size: an answer 40 ms late after a
    4 MiB body that left in 3 ms jumps to 32 MiB at once instead of doubling through three
    more round trips, while a link where the body takes most of the time still doubles. With
    ``serial`` (WCS appends: one request in flight, so every round trip leaves the link idle
    where other streams would fill it) the share is ``SERIAL_SHARE`` instead (they used to
    only double: on a 100 MB/s link with a 20 ms round trip, 4-8-16-32-64 MiB paid two round
    trips more than 4-32-64 MiB, 0.84x curl -F instead of about 0.9x).
    A chunk never grows past what would last about ``MAX_SECONDS`` at the rate the last one went (its whole
    request time, scaled): the time "writing the body" ends when the bytes are in the socket
    buffers, so on a slow link a chunk that fits in them looks all overhead, and without this
    bound it would grow to the cap, making each acknowledgement, and the bytes a crash can
    cost, minutes apart. A link whose round trip is known to be long (a query, all round trip,
    took ``rtt`` seconds) allows chunks of ``RTT_MULTIPLE x rtt`` seconds instead, so a far
    server still gets chunks big enough to hide it. Halves
    after a failure or stall (not below ``floor``); after a 4001/413 it learns the server's
    limit (the refused size) and never reaches it again, going back to the largest size the
    server accepted; growing again then goes only halfway to the refused size.

    A request that took under ``SHORT_SECONDS`` grows too, by the power of two (at most
    ``MAX_GROWTH``) that keeps it under that, even when little of it was overhead: on a fast
    link (a loopback or LAN server answering at once) a 4 MiB chunk takes a few milliseconds,
    and what each costs is CPU on both ends (the request, its answer, the acknowledgement),
    paid 32 times for a 128 MiB file at 4 MiB and 4 times at 32 MiB.
    """

    OVERHEAD_SHARE = 0.25
    #: the share for requests sent one at a time (see above)
    SERIAL_SHARE = 0.05
    #: the most one answer can multiply the size by
    MAX_GROWTH = 8
    #: a request shorter than this grows (by the power of two that keeps it under it) whatever
    #: its overhead share: on a fast link the cost of a request is CPU, not waiting
    SHORT_SECONDS = 0.1
    #: growing stops once a chunk would last longer than this (seconds, whole request)
    MAX_SECONDS = 1.0
    #: ... or this many times the shortest query round trip seen, if that is longer
    RTT_MULTIPLE = 20
    #: below this a server that refuses a request as too large is not worth trying smaller
    MIN_CHUNK = 64 << 10

    def __init__(self, start: int, cap: int, *, serial: bool = False) -> None:
        self.share = self.SERIAL_SHARE if serial else self.OVERHEAD_SHARE
        self.max_growth = self.MAX_GROWTH
        self.cap = max(start, cap)
        self.size = start
        self.floor = min(start, 256 << 10)
        self.limit: int | None = None  # the smallest size the server refused as too large
        self.largest_ok = 0
        self.rtt: float | None = None  # the shortest tiny request seen (see round_trip)
        self._lock = threading.Lock()

    def round_trip(self, seconds: float) -> None:
        """A request with a tiny body took ``seconds``: a bound on the link's round trip."""
        with self._lock:
            self.rtt = seconds if self.rtt is None else min(self.rtt, seconds)

    def ok(self, length: int, reply: Reply) -> None:
        with self._lock:
            self.largest_ok = max(self.largest_ok, length)
            if length < self.size or reply.seconds <= 0:
                return
            overhead = max(0.0, reply.seconds - reply.body_seconds)
            factor = 1
            if overhead > self.share * reply.seconds:
                # the body time at which the overhead would be OVERHEAD_SHARE of the request
                wanted = overhead * (1 - self.share) / self.share
                factor = 2
                while factor < self.max_growth and reply.body_seconds * factor < wanted:
                    factor *= 2
            short = 1
            while short < self.max_growth and reply.seconds * short * 2 <= self.SHORT_SECONDS:
                short *= 2
            factor = max(factor, short)
            longest = max(self.MAX_SECONDS, self.RTT_MULTIPLE * (self.rtt or 0.0))
            while factor > 1 and reply.seconds * factor > longest:
                factor //= 2
            bigger = min(self.size * factor, self.cap)
            if self.limit is not None:  # halfway to the refused size: a binary search for the limit
                bigger = min(bigger, (max(self.largest_ok, self.size) + self.limit) // 2)
            if factor > 1 and bigger > self.size:
                self.size = bigger

    def failed(self) -> None:
        with self._lock:
            self.size = max(self.floor, self.size // 2)

    def too_large(self, length: int) -> bool:
        """The server refused ``length`` bytes as too large; False when there is no smaller size to try."""
        with self._lock:
            self.limit = min(self.limit or length, length)
            if length <= self.MIN_CHUNK:
                return False
            smaller = self.largest_ok if 0 < self.largest_ok < length else length // 2
            self.size = max(self.MIN_CHUNK, min(self.size, smaller))
            return True


class _Driver:
    main: StreamClient

    def __init__(self, ctx: RunContext, handle: RunHandle) -> None:
        self.ctx = ctx
        self.h = handle
        self.spec = ctx.spec
        self.cfg = ctx.config
        self.source = ctx.source
        self.backoff = ctx.backoff
        self.sizer = ChunkSizer(
            self.spec.chunk_size,
            max(self.spec.chunk_max or self.cfg.chunk_max, self.spec.chunk_size),
            serial=self.spec.protocol == "wcs-append",
        )
        self._lock = threading.Lock()

    def send(
        self,
        url: str,
        headers: dict[str, str],
        body: Any,
        file_len: int = 0,
        on_file: Callable[[memoryview], None] | None = None,
        sc: StreamClient | None = None,
    ) -> Reply:
        """One request on ``sc`` (default: the run's main stream), abortable by pause and cancel."""
        h = self.h
        sc = sc or self.main
        h.note_attempt()
        sent = 0

        def counted(n: int) -> None:
            nonlocal sent
            sent += n
            h.add_sent(n)

        unregister = h.on_abort(sc.abort)
        try:
            return post(
                sc,
                url,
                headers={**self.spec.headers, **headers},
                body=body,
                timeout=self.ctx.timeout,
                check=self.check,
                stall_timeout=self.cfg.stall_timeout,
                file_len=file_len,
                on_sent=counted,
                on_file=on_file,
                throttle=self.ctx.throttle,
            )
        except StepFailed:
            h.check()  # an aborted request is a pause or a cancel, not a failure
            raise
        finally:
            unregister()
            h.end_request(sent)

    def check(self) -> None:
        self.h.check()
        self.ctx.check_source()

    def failed(self, exc: StepFailed, reschedule: bool = False) -> None:
        """Back off after a failed step (in this thread, or by giving the worker back), or give up."""
        if not exc.error.retryable:
            raise exc
        with self._lock:
            delay = self.backoff.next_delay(exc.retry_after)
            tries = self.backoff.failures
        if delay is None:
            raise StepFailed(
                TaskError(
                    f"{exc.error.message} (gave up after {tries} tries without progress)",
                    code=exc.error.code,
                    status=exc.error.status,
                    retryable=True,
                )
            )
        self.h.report_error(exc.error)
        if reschedule:
            raise Reschedule(delay)
        self.h.sleep(delay)

    def progress(self) -> None:
        with self._lock:
            self.backoff.progress()


class _Plan:
    """The ranges of one resumable upload: acknowledged, in flight, and what is left.

    Streams :meth:`take` a missing range nobody is sending, cut to the current chunk size and
    to its field's end, from the field with the fewest chunks in flight; a failed stream
    :meth:`give_back` its range. ``stop`` ends every stream. ``complete`` holds the fields
    the server said (or a query showed) are whole; ``answers`` each field's last answer.

    Near the end the chunks are cut to equal shares: once less is left than one chunk per
    stream, what is left is split ``streams`` ways (not below ``MIN_SHARE``) and that share
    caps every later chunk. With whole chunks the last one would go out alone while the other
    streams idle (a 128 MiB file in 16 MiB chunks on 4 streams is two full rounds and one of
    three: a fifth of the time with a stream idle, on a link paced per flow). The share is
    fixed once, not recomputed at each take: recomputed, each take would cut a smaller piece
    than the one before and the tail would cost a row of extra round trips.
    """

    #: the smallest piece the tail is cut into (below it, a round trip costs more than it saves)
    MIN_SHARE = 1 << 20

    def __init__(self, held: RangeSet, layout: FieldLayout) -> None:
        self.layout = layout
        self.total = layout.total
        self.acked = held.clip(self.total)
        self.inflight: dict[int, ByteRange] = {}
        self.where: dict[int, int] = {}  # ticket -> field index
        self.error: BaseException | None = None
        self.complete: set[int] = set()
        self.answers: dict[int, uploader.ChunkAnswer] = {}
        self.clients: set[StreamClient] = set()
        self.streams = 1  # how many streams take from this plan (set by the driver)
        self.tail: int | None = None  # the cap on chunks once the tail was split (see above)
        self._lock = threading.Lock()
        self._n = 0

    @property
    def stopped(self) -> bool:
        return self.error is not None

    @property
    def all_complete(self) -> bool:
        return all(i in self.complete for i, f in enumerate(self.layout.files) if f.size > 0)

    def take(self, size: int) -> tuple[int, ByteRange] | None:
        with self._lock:
            if self.error is not None:
                return None
            busy = RangeSet((r.start, r.end) for r in self.inflight.values())
            free = (self.acked | busy).missing(self.total)
            if not free:
                return None
            layout = self.layout
            best: tuple[int, int, RangeSet] | None = None
            for i, f in enumerate(layout.files):
                if f.size == 0:
                    continue
                mine = layout.of_field(i, free)
                if not mine:
                    continue
                load = sum(1 for j in self.where.values() if j == i)
                if best is None or load < best[0]:
                    best = (load, i, mine)
                    if load == 0:
                        break
            if best is None:
                return None
            _, i, mine = best
            if self.tail is None and self.streams > 1 and free.covered() < self.streams * size:
                self.tail = max(self.MIN_SHARE, -(-free.covered() // self.streams))
            if self.tail is not None:
                size = min(size, self.tail)
            first = next(mine.pieces(size))
            base = layout.bases[i]
            piece = ByteRange(base + first.start, base + first.end)
            self._n += 1
            self.inflight[self._n] = piece
            self.where[self._n] = i
            return self._n, piece

    def give_back(self, ticket: int) -> None:
        with self._lock:
            self.inflight.pop(ticket, None)
            self.where.pop(ticket, None)

    def done(self, ticket: int, got: RangeSet, answer: uploader.ChunkAnswer) -> None:
        with self._lock:
            self.inflight.pop(ticket, None)
            i = self.where.pop(ticket, None)
            self.acked = self.acked | got.clip(self.total)
            if i is not None and (answer.complete or i not in self.complete):
                # streams' answers may be handled out of order: an earlier chunk's "not yet
                # complete" must not replace the answer that completed the field (and named
                # where the server stored it)
                self.answers[i] = answer
                if answer.complete:
                    self.complete.add(i)

    def merge(self, held: RangeSet) -> None:
        with self._lock:
            self.acked = self.acked | held.clip(self.total)

    def stop(self, exc: BaseException) -> None:
        """End every stream: the first reason wins; the others' connections are cut."""
        with self._lock:
            if self.error is None or (
                isinstance(exc, Interrupted) and not isinstance(self.error, Interrupted)
            ):
                self.error = exc
            clients = list(self.clients)
        for sc in clients:
            sc.abort()


class _FieldSource:
    """Field ``[base, base + size)`` of the task's source, read in the field's own offsets
    (only when no one part of the source is the field: see :func:`_field_source`)."""

    def __init__(self, source: Any, base: int, size: int) -> None:
        self._source = source
        self._base = base
        self.size = size

    def pread(self, size: int, offset: int) -> bytes:
        data: bytes = self._source.pread(size, self._base + offset)
        return data


def _field_source(source: Any, index: int, base: int, size: int) -> Any:
    """What a session's field is read from: the file that holds it, when the task's source is
    the session's files end to end (:class:`~nbupload.engine.multifile.ConcatSource`).

    The field's own offsets are then that file's offsets, so the wire path (:mod:`.wire`)
    sends a path's bytes with ``sendfile`` from its descriptor, as for a single file; an
    in-memory field (bytes, an object with ``pread``) is read as before. Any other source is
    read through :class:`_FieldSource` (offsets shifted by ``base``), which copies.
    """
    part = source.part_at(index, base, size) if isinstance(source, ConcatSource) else None
    return part if part is not None else _FieldSource(source, base, size)


class _EarlyStreams:
    """A task's extra streams, started before the uploader query is sent.

    Each takes a client from the pool and opens its connection while the query is answered,
    then waits for the plan: a far server's round trip is paid once for all of them, not a
    second time after the query (40 MB/s per flow at 80 ms: three streams each lost 80 ms), and
    their threads start meanwhile. :meth:`start` hands the plan to the first ``k`` (the others,
    or all after :meth:`stop`, give their client back and end).
    """

    def __init__(self, driver: _UploaderDriver, n: int) -> None:
        self._driver = driver
        self._go = threading.Event()
        self._plans: list[_Plan | None] = [None] * n
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name="nbupload-stream", daemon=True)
            for i in range(n)
        ]
        for t in self._threads:
            t.start()

    def __len__(self) -> int:
        return len(self._threads)

    def _run(self, i: int) -> None:
        d = self._driver
        sc = d.ctx.clients.acquire()
        try:
            preconnect(sc, d.spec.url, d.ctx.timeout)
            self._go.wait()
            plan = self._plans[i]
            if plan is not None:
                d._stream(plan, sc)
        finally:
            d.ctx.clients.release(sc)

    def start(self, plan: _Plan, k: int) -> list[threading.Thread]:
        """Let the first ``k`` streams work on ``plan``; their threads, to join."""
        for i in range(min(k, len(self._plans))):
            self._plans[i] = plan
        self._go.set()
        return self._threads[:k]

    def stop(self) -> None:
        """Not needed after all (plain mode, a failed query, pause): they end on their own."""
        self._go.set()


class _UploaderDriver(_Driver):
    def __init__(self, ctx: RunContext, handle: RunHandle, plain: bool) -> None:
        super().__init__(ctx, handle)
        self.force_plain = plain
        self.early: _EarlyStreams | None = None
        spec = self.spec
        self.multi = bool(spec.files)
        files = spec.files or (SessionFile(spec.field_name, spec.filename, ctx.total, mime=spec.mime),)
        self.layout = FieldLayout.of(files)
        self.sources: list[Any] = [
            self.source if not self.multi else _field_source(self.source, i, base, f.size)
            for i, (f, base) in enumerate(zip(self.layout.files, self.layout.bases, strict=True))
        ]

    def _content_type(self, f: SessionFile) -> str:
        return f.mime or self.spec.content_type

    def run(self) -> Any:
        h = self.h
        mode = "plain" if self.force_plain else None
        known_resumable = h.driver_state.resumable
        held = RangeSet()
        try:
            if mode != "plain":
                n = min(self._streams_wanted(), -(-self.ctx.total // max(1, self.sizer.size)))
                if n > 1:
                    self.early = _EarlyStreams(self, n - 1)
                answer = self.query(known_resumable)
                if answer.resumable:
                    if not known_resumable:
                        # Journaled off this thread: the streams wait for nothing. Should the
                        # process die before it is written, the next run asks the server again.
                        h.set_driver_state(replace(h.driver_state, mode="resumable"))
                        h.save_later()
                    held = self.layout.held(answer.held)
                    h.set_acked_exact(held.clip(self.ctx.total))
                else:
                    mode = "plain"
                    h.set_driver_state(replace(h.driver_state, mode="plain", plain_reason=answer.reason))
            h.set_state_uploading()
            if mode == "plain":
                self._stop_early()
                return self.plain()
        except StepFailed as exc:
            self._stop_early()
            self.failed(exc, reschedule=True)  # a new run asks the server again
            raise  # pragma: no cover - failed() always raises with reschedule=True
        except BaseException:
            self._stop_early()
            raise
        try:
            return self.resumable(held)
        finally:
            self._stop_early()

    def _streams_wanted(self) -> int:
        return max(1, self.spec.streams or self.cfg.streams)

    def _stop_early(self) -> None:
        early, self.early = self.early, None
        if early is not None:
            early.stop()

    def query(self, known_resumable: bool, sc: StreamClient | None = None) -> uploader.QueryAnswer:
        headers, body = uploader.prepare_query(self.spec.boundary)
        reply = self.send(self.spec.url, headers, body, sc=sc)
        self.sizer.round_trip(reply.seconds)  # a tiny body: all of it is round trip
        answer = uploader.process_query_answer(reply.status, reply.body, self.spec.boundary)
        verdict = uploader.classify_query(reply.status, answer, known_resumable)
        if verdict.kind in (VerdictKind.OK, VerdictKind.PLAIN):
            return answer
        raise StepFailed(
            TaskError(f"query failed: {answer.reason}", status=reply.status, retryable=verdict.retryable),
            retry_after=reply.retry_after,
        )

    def _judge(self, reply: Reply, f: SessionFile | None = None) -> uploader.ChunkAnswer:
        """The chunk answer, or :class:`StepFailed`; in a session the error names the field."""
        answer = uploader.process_chunk_answer(reply.status, reply.body)
        verdict = uploader.classify_chunk(answer, reply.headers.get("location"))
        if verdict.kind is VerdictKind.OK:
            return answer
        if verdict.kind is VerdictKind.REDIRECT:
            raise StepFailed(
                TaskError(f"the server redirects to {verdict.location}: use that URL", status=reply.status)
            )
        retryable = verdict.kind is VerdictKind.RETRY
        text = answer.text
        if self.multi and f is not None:
            text = f"field {f.name!r} ({f.filename}): {text}"
        raise StepFailed(
            TaskError(text, answer.code, reply.status, retryable=retryable),
            retry_after=reply.retry_after if retryable else None,
        )

    @staticmethod
    def _too_large(exc: StepFailed) -> bool:
        """The request (not the file) was too big: 4001, or a bare 413 without a code."""
        return exc.error.code == _E.REQUEST_TOO_LARGE or (exc.error.status == 413 and exc.error.code is None)

    def plain(self) -> Any:
        spec = self.spec
        body: Any
        if self.multi:
            body = uploader.prepare_plain_files(
                spec.boundary,
                [
                    uploader.FileField(f.name, f.filename, src, self._content_type(f))
                    for f, src in zip(self.layout.files, self.sources, strict=True)
                ],
                fields=spec.fields,
                piece_size=self.cfg.piece_size,
            )
        else:
            body = uploader.prepare_plain(
                spec.boundary,
                self.source,
                name=spec.field_name,
                filename=spec.filename,
                fields=spec.fields,
                content_type=spec.content_type,
                piece_size=self.cfg.piece_size,
            )
        reply = self.send(spec.url, {}, body, file_len=self.ctx.total)
        answer = self._judge(reply)
        self.h.acknowledge(RangeSet([(0, self.ctx.total)]))
        if not self.multi:
            return {"mode": "plain", "status": answer.status, **dict(answer.extra)}
        told = {
            str(item["name"]): item
            for item in answer.extra.get("files") or []
            if isinstance(item, dict) and "name" in item
        }
        files = {}
        for f in self.layout.files:
            info = {k: v for k, v in (told.get(f.name) or {}).items() if k not in ("name", "range")}
            files[f.name] = {"filename": f.filename, "size": f.size, **info, "complete": True}
        return {"mode": "plain", "status": answer.status, "files": files}

    def _chunk_body(self, i: int, start: int, end: int) -> Any:
        """The chunk ``[start, end)`` of field ``i`` (field offsets)."""
        spec, f = self.spec, self.layout.files[i]
        return uploader.prepare_chunk(
            spec.boundary,
            self.sources[i],
            start,
            end,
            name=f.name,
            filename=f.filename,
            fields=spec.fields,
            content_type=self._content_type(f),
            piece_size=self.cfg.piece_size,
        )

    def _empty_fields(self, plan: _Plan) -> None:
        """One empty chunk per zero-byte field: it tells the server the (empty) file exists.

        Sent on every run: a field already complete on the server takes it as a no-op."""
        for i, f in enumerate(self.layout.files):
            if f.size == 0:
                answer = self._judge(self.send(self.spec.url, {}, self._chunk_body(i, 0, 0)), f)
                plan.answers[i] = answer
                plan.complete.add(i)

    def resumable(self, held: RangeSet) -> Any:
        total = self.ctx.total
        result: dict[str, Any] = {"mode": "resumable", "boundary": self.spec.boundary}
        plan = _Plan(held, self.layout)
        if (
            not self.multi and total == 0
        ):  # nothing to slice: one empty chunk tells the server the file exists
            self._empty_fields(plan)
            last = plan.answers[0]
            result.update(dict(last.extra))
            result["complete"] = last.complete
            return result
        self._empty_fields(plan)
        for _ in range(ASSEMBLY_ROUNDS):
            if total:
                self.streams(plan)
            if plan.all_complete:
                break
            # Every range went out but no answer said each field is complete: ask the server.
            answer = self._query_until_answered(plan)
            held_now = self.layout.held(answer.held)
            plan.merge(held_now)
            for i, f in enumerate(self.layout.files):
                if f.size and answer.ranges_for(f.name).covers(f.size):
                    plan.complete.add(i)
            if plan.all_complete:
                break
            self.h.report_error(
                TaskError(
                    f"the server holds {held_now.covered()} of {total} bytes after every chunk was sent; "
                    "sending the missing ranges again",
                    retryable=True,
                )
            )
            plan.acked = held_now.clip(total)
        if not plan.all_complete:
            raise StepFailed(
                TaskError(
                    "the server acknowledged every chunk but never assembled the file "
                    f"(asked {ASSEMBLY_ROUNDS} "
                    "times); the upload is not complete",
                    code="incomplete",
                )
            )
        if not self.multi:
            if 0 in plan.answers:
                result.update(dict(plan.answers[0].extra))
            result["complete"] = True
            return result
        files = {}
        for i, f in enumerate(self.layout.files):
            told = dict(plan.answers[i].extra) if i in plan.answers else {}
            files[f.name] = {"filename": f.filename, "size": f.size, **told, "complete": True}
        result["complete"] = True
        result["files"] = files
        return result

    def _query_until_answered(self, plan: _Plan) -> uploader.QueryAnswer:
        while True:
            try:
                return self.query(True)
            except StepFailed as exc:
                self.failed(exc)

    def streams(self, plan: _Plan) -> None:
        """Send every missing range of ``plan`` on up to ``streams`` concurrent streams."""
        n = self._streams_wanted()
        left = plan.acked.missing(plan.total).covered()  # no more streams than chunks left:
        n = min(n, max(1, -(-left // max(1, self.sizer.size))))  # a small file starts no threads
        plan.streams = n
        early, self.early = self.early, None
        others = early.start(plan, n - 1) if early is not None else []
        more = [
            threading.Thread(target=self._stream, args=(plan, None), name="nbupload-stream", daemon=True)
            for _ in range(n - 1 - len(others))
        ]
        for t in more:
            t.start()
        others += more
        try:
            self._stream(plan, self.main)
        finally:
            for t in others:
                t.join()
        if plan.error is not None:
            raise plan.error

    def _stream(self, plan: _Plan, sc: StreamClient | None) -> None:
        own = sc is None
        client = sc or self.ctx.clients.acquire()
        with plan._lock:
            plan.clients.add(client)
        try:
            self._stream_loop(plan, client)
        except BaseException as exc:  # noqa: BLE001 - handed to the run's thread
            plan.stop(exc)
        finally:
            with plan._lock:
                plan.clients.discard(client)
            if own:
                self.ctx.clients.release(client)

    def _stream_loop(self, plan: _Plan, sc: StreamClient) -> None:
        h = self.h
        layout = self.layout
        while True:
            taken = plan.take(self.sizer.size)
            if taken is None:
                return
            ticket, piece = taken
            i = plan.where[ticket]
            f, base = layout.files[i], layout.bases[i]
            h.set_chunk_size(self.sizer.size)
            try:
                reply = self.send(
                    self.spec.url,
                    {},
                    self._chunk_body(i, piece.start - base, piece.end - base),
                    file_len=len(piece),
                    sc=sc,
                )
                answer = self._judge(reply, f)
            except StepFailed as exc:
                if plan.stopped or self._too_large(exc):
                    plan.give_back(ticket)
                    if plan.stopped:
                        return
                    if not self.sizer.too_large(len(piece)):
                        raise
                    h.set_chunk_size(self.sizer.size)
                    continue  # the same bytes again, smaller; nothing was applied
                # The range stays reserved while this stream backs off and asks the server: the
                # request may have landed, and no other stream may send it again blindly.
                try:
                    self.sizer.failed()
                    self.failed(exc)
                    self._recover(plan, sc)
                finally:
                    plan.give_back(ticket)
                continue
            except BaseException:
                plan.give_back(ticket)
                raise
            got = RangeSet([(piece.start, piece.end)])
            if answer.held is not None:  # what the server holds of this chunk's field
                got = got | layout.to_task(i, answer.held)
            plan.done(ticket, got, answer)
            h.acknowledge(got)
            self.sizer.ok(len(piece), reply)
            self.progress()

    def _recover(self, plan: _Plan, sc: StreamClient) -> None:
        """After a failure: ask the server what it holds (never resend blindly)."""
        while not plan.stopped:
            try:
                answer = self.query(True, sc=sc)
            except StepFailed as exc:
                self.failed(exc)
                continue
            held = self.layout.held(answer.held)
            plan.merge(held)
            self.h.set_acked_exact(held.clip(self.ctx.total))
            return


class _WcsDriver(_Driver):
    def run(self) -> Any:
        h, spec = self.h, self.spec
        creds = spec.credentials
        if creds is None:
            raise StepFailed(
                TaskError("wcs-append needs credentials: a token, or access key + secret key + scope")
            )
        base = spec.url.rstrip("/")
        total = self.ctx.total
        position = h.driver_state.position
        # A replay after a restart must be the same append (same length) to be judged as ours:
        # the size of the next append is journaled with the position, durably, before it goes.
        if h.driver_state.append_size:
            self.sizer.size = h.driver_state.append_size
        # The etag state outlives a run in memory, so a run that gave its worker back during a
        # backoff does not read the file's prefix again.
        memo = h.memo
        committed = memo["wcs_hasher"] if memo.get("wcs_at") == position else self.rehash(position)
        memo.update(wcs_at=position, wcs_hasher=committed)
        h.set_acked_exact(RangeSet([(0, position)]) if position else RangeSet())
        h.set_state_uploading()
        final_hash: str | None = None
        refreshed = False
        first = True
        while first or position < total:
            first = False
            length = min(self.sizer.size, total - position)
            h.set_chunk_size(self.sizer.size)
            twin = committed.copy()
            body = wcs.prepare_append(
                creds.current(),
                self.source,
                position,
                length,
                key=spec.key,
                mime=spec.mime,
                variables=spec.fields,
                filename=spec.filename,
                piece_size=self.cfg.piece_size,
            )
            try:
                reply = self.send(
                    base + wcs.append_path(position), {}, body, file_len=length, on_file=twin.update
                )
            except StepFailed as exc:
                first = True  # the same append again (B5), by a new run after the backoff
                self.failed(exc, reschedule=True)
                continue
            answer = wcs.process_append_answer(reply.status, reply.headers.multi_items(), reply.body)
            verdict = wcs.judge_replay(position, length, answer)
            if answer.ok:
                if answer.next_position is not None and answer.next_position != position + length:
                    raise StepFailed(
                        TaskError(
                            f"the server says the object is {answer.next_position} bytes after appending "
                            f"{length} at {position}: someone else is appending to it",
                            code="conflict",
                            status=reply.status,
                        )
                    )
                if twin.size != position + length:  # the server answered before reading it all
                    twin = self.rehash(position + length)
                committed = twin
                final_hash = answer.hash
                self.sizer.ok(length, reply)
            elif verdict.landed:
                committed = self.rehash_chunk(committed, position, length)
                final_hash = None
            elif verdict.conflict:
                raise StepFailed(
                    TaskError(
                        f"conflict: this upload expected the object at {position} bytes but the server has "
                        f"{verdict.next_position}; someone else appended to {creds.scope} "
                        "(nothing was overwritten)",
                        code="409",
                        status=409,
                    )
                )
            elif reply.status == 413 and self.sizer.too_large(length):
                first = True
                h.set_driver_state(replace(h.driver_state, append_size=self.sizer.size), save=True)
                continue
            else:
                first = True
                self.failed(
                    self.append_failure(reply, answer, creds, refreshed), reschedule=reply.status != 401
                )
                if reply.status == 401:
                    refreshed = True
                continue
            refreshed = False
            position += length
            h.set_driver_state(replace(h.driver_state, position=position, append_size=self.sizer.size))
            memo.update(wcs_at=position, wcs_hasher=committed)
            h.acknowledge(RangeSet([(0, position)]) if position else RangeSet())
            self.progress()
        local = committed.etag()
        if final_hash is None:
            final_hash = self.probe_hash(base, creds, total)
        if position != total:
            raise StepFailed(
                TaskError(f"the object ends at {position} bytes, the file has {total}", code="incomplete")
            )
        if final_hash is None:
            raise StepFailed(
                TaskError(
                    "the server never said which hash the object has: it cannot be checked",
                    code="unverified",
                    retryable=True,
                )
            )
        if final_hash != local:
            raise StepFailed(
                TaskError(
                    f"hash mismatch: the server's object has etag {final_hash}, the data sent has {local}",
                    code="hash-mismatch",
                )
            )
        bucket, scoped_key = creds.bucket_key
        return {
            "hash": local,
            "verified": True,
            "position": position,
            "bucket": bucket,
            "key": spec.key or scoped_key,
        }

    def append_failure(
        self, reply: Reply, answer: wcs.AppendAnswer, creds: Any, refreshed: bool
    ) -> StepFailed:
        if reply.status == 409 and answer.object_type == "Normal":
            return StepFailed(
                TaskError(
                    "the object exists and is not appendable (x-wcs-object-type: Normal)",
                    code=answer.code or "409",
                    status=409,
                )
            )
        if reply.status == 401 and not refreshed and creds.refresh():
            return StepFailed(TaskError(answer.text, code=answer.code, status=401, retryable=True))
        if reply.status in (400, 401, 403, 404, 409, 413):
            return StepFailed(
                TaskError(answer.text, code=answer.code or str(reply.status), status=reply.status)
            )
        return status_failure(reply, answer.text, answer.code)

    def rehash(self, end: int) -> wcs.EtagHasher:
        """The etag state of ``source[0:end]`` (after a restart or a replayed append)."""
        hasher = wcs.EtagHasher()
        step = 1 << 20
        for off in range(0, end, step):
            self.h.check()
            hasher.update(self.source.pread(min(step, end - off), off))
        return hasher

    def rehash_chunk(self, committed: wcs.EtagHasher, start: int, length: int) -> wcs.EtagHasher:
        twin = committed.copy()
        step = 1 << 20
        for off in range(start, start + length, step):
            twin.update(self.source.pread(min(step, start + length - off), off))
        return twin

    def probe_hash(self, base: str, creds: Any, total: int) -> str | None:
        """The last append's answer was lost: an empty append at the end returns the hash."""
        body = wcs.prepare_append(
            creds.current(),
            _Empty(),
            0,
            0,
            key=self.spec.key,
            mime=self.spec.mime,
            filename=self.spec.filename,
        )
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
