"""``nbupload put``, ``resume``, ``ls`` and ``rm``: the engine on the command line.

The put options are declared once in :mod:`nbupload.options` (shared with the ``%upload``
magic, which takes the same options as ``put``); this module re-exports them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..options import (
    OptionError,
    _add_common,
    _add_credentials,
    add_max_rate_argument,
    add_put_arguments,
    parse_field,
    parse_header,
    positive_float,
    streams_arg,
)
from ..options import put_options as _put_options
from ..units import format_size
from . import CommandError

if TYPE_CHECKING:  # the engine loads on use, so `nbupload --help` stays quick
    from ..engine import Engine, Task, TaskSnapshot

__all__ = [
    "ProgressBars",
    "add_put_arguments",
    "engine_settings",
    "parse_field",
    "parse_header",
    "put_options",
    "put_parser",
    "register",
]

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM


class _Terminated(Exception):
    """SIGTERM arrived while waiting: pause like Ctrl-C does."""


@contextlib.contextmanager
def _sigterm_pauses() -> Iterator[None]:
    """While waiting, SIGTERM pauses the tasks (as Ctrl-C does) instead of killing the process.

    SIGINT is left as the process found it: Python's handler (Ctrl-C pauses) or, when the process
    was started with SIGINT ignored (``cmd &`` in a script, some CI runners), ignored, as a
    background job should not stop on the terminal's Ctrl-C; SIGTERM still pauses it cleanly.
    A SIGTERM the process was started ignoring stays ignored.
    """
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    ):
        yield
        return

    def on_term(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, previous)  # a second SIGTERM ends the process at once
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def put_parser(prog: str = "nbupload put") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Upload a file and wait for it.")
    add_put_arguments(parser)
    return parser


def put_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for ``Engine.submit`` / ``nbupload.upload`` from parsed put options."""
    try:
        return _put_options(args)
    except OptionError as exc:
        raise CommandError(str(exc)) from None


def engine_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``EngineConfig`` changes from ``--retries`` and ``--timeout``."""
    out: dict[str, Any] = {}
    if getattr(args, "retries", None) is not None:
        if args.retries < 0:
            raise CommandError("--retries must not be negative")
        out["retries"] = args.retries
    if getattr(args, "streams", None):
        out["streams"] = args.streams
    if getattr(args, "max_rate", None):
        out["max_rate"] = args.max_rate
    if getattr(args, "timeout", None):
        t = args.timeout
        out.update(connect_timeout=t, read_timeout=t, write_timeout=t, stall_timeout=t)
    if getattr(args, "cacert", None) and getattr(args, "insecure", False):
        raise CommandError("give either --cacert or --insecure, not both")
    if getattr(args, "cacert", None):
        if not os.path.isfile(args.cacert):
            raise CommandError(f"--cacert {args.cacert}: no such file")
        out["verify"] = args.cacert
    elif getattr(args, "insecure", False):
        out["verify"] = False
    return out


class ProgressBars:
    """One tqdm bar per task, fed by engine events (acked + in flight)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bars: dict[str, Any] = {}

    def __call__(self, event: Any) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        snap = event.snapshot
        bar = self._bars.get(snap.id)
        if bar is None:
            bar = tqdm(
                total=snap.total,
                initial=snap.acked,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=snap.name[:30],
                file=sys.stderr,
                leave=True,
                dynamic_ncols=True,
                position=len(self._bars),
            )
            self._bars[snap.id] = bar
        bar.n = min(snap.total, snap.acked + snap.inflight)
        state = snap.state.value
        if event.kind == "error" and snap.error is not None:
            bar.set_postfix_str(f"retrying: {snap.error}"[:60], refresh=False)
        elif state not in ("uploading",):
            bar.set_postfix_str(state, refresh=False)
        else:
            bar.set_postfix_str("", refresh=False)
        bar.refresh()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


def _make_engine(args: argparse.Namespace) -> Engine:
    from ..engine import Engine, EngineConfig

    try:
        return Engine(EngineConfig(**engine_settings(args)))
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _wait_all(engine: Engine, tasks: list[Task], quiet: bool) -> int:
    """Wait for tasks; Ctrl-C pauses them (the journal keeps them) and says how to resume."""
    from ..engine import TaskEvent, TaskState

    bars = ProgressBars(enabled=not quiet)
    unsubscribe = engine.subscribe(bars)
    for t in tasks:  # draw the bars at once
        bars(TaskEvent("state", t.snapshot()))
    try:
        try:
            with _sigterm_pauses():
                while any(
                    t.state not in (TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED, TaskState.PAUSED)
                    for t in tasks
                ):
                    time.sleep(0.1)
        except (KeyboardInterrupt, _Terminated) as stop:
            for t in tasks:
                t.pause()
            for t in tasks:
                with contextlib.suppress(TimeoutError):
                    t.wait(10)
            engine.flush_events()
            bars.close()
            ids = " ".join(t.id for t in tasks if t.state is TaskState.PAUSED)
            if ids:
                kept = all(t.persistent for t in tasks)
                how = f"nbupload resume {ids}" if kept else "(not journaled: nothing to resume)"
                print(f"nbupload: paused; resume with: {how}", file=sys.stderr)
            else:
                print("nbupload: interrupted", file=sys.stderr)
            return EXIT_TERMINATED if isinstance(stop, _Terminated) else EXIT_INTERRUPTED
        engine.flush_events()
    finally:
        unsubscribe()
        bars.close()
    status = 0
    for t in tasks:
        snap = t.snapshot()
        if snap.state is TaskState.DONE:
            if not quiet:
                print(_done_line(snap), file=sys.stderr)
            continue
        status = EXIT_FAILED
        if snap.state is TaskState.FAILED:
            err = snap.error
            msg = f"nbupload: upload of {snap.name} failed: {err}"
            if (
                err is not None
                and (err.retryable or err.code in ("needs-credentials", "needs-secrets"))
                and t.persistent
            ):
                msg += f"\nnbupload: the journal keeps it; try again with: nbupload resume {t.id}"
            elif t.persistent:
                engine.discard(t.id)
            print(msg, file=sys.stderr)
        elif snap.state is TaskState.PAUSED:
            print(f"nbupload: {snap.name} paused; resume with: nbupload resume {t.id}", file=sys.stderr)
        else:
            print(f"nbupload: {snap.name} {snap.state.value}", file=sys.stderr)
    return status


def _done_line(snap: TaskSnapshot) -> str:
    took = (snap.finished_at or 0) - (snap.started_at or 0)
    extra = ""
    if isinstance(snap.result, dict) and snap.result.get("hash"):
        extra = f", etag {snap.result['hash']}"
    line = (
        f"nbupload: {snap.name}: {format_size(snap.total)} uploaded in {took:.1f} s ({snap.protocol}{extra})"
    )
    files = snap.result.get("files") if isinstance(snap.result, dict) else None
    if isinstance(files, dict):  # a multi-file session: each field's outcome
        for field, info in files.items():
            stored = info.get("stored") or info.get("filename")
            line += f"\nnbupload:   {field}: {info.get('filename')} ({format_size(int(info.get('size', 0)))})"
            line += f" stored as {stored}"
    return line


def cmd_put(args: argparse.Namespace) -> int:
    from ..batchpaths import split_url
    from ..options import split_put_targets

    try:
        given, target = split_put_targets(args)
    except OptionError as exc:
        raise CommandError(f"{exc} (see nbupload put -h)") from None
    try:
        paths, url = split_url([*given, target])
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if url is None:
        from ..engine.redact import redact_url

        try:
            shown = redact_url(target)[0]  # never a secret in a message
        except Exception:  # noqa: BLE001 - not even a URL: a path, say it as given
            shown = target
        raise CommandError(
            f"invalid URL {shown!r}: the last argument must be the upload URL (http:// or https://)"
        )
    args.url = url
    opts = put_options(args)
    if args.files:
        return _put_session(args, opts)
    if args.follow:
        return _put_follow(args, paths, opts)
    single = len(paths) == 1 and os.path.isfile(paths[0]) and not args.prefix
    if not single:
        return _put_batch(args, paths, opts)
    return _submit_and_wait(args, paths[0], opts)


def _put_follow(args: argparse.Namespace, paths: list[str], opts: dict[str, Any]) -> int:
    """``--follow``: append what one file gains (nbupload/following.py) until Ctrl-C or --idle."""
    from ..append import AppendStreamError
    from ..following import follow

    if opts["protocol"] != "wcs-append" or len(paths) != 1:
        raise CommandError("--follow needs one FILE and --protocol wcs-append")
    if not os.path.isfile(paths[0]):
        raise CommandError(f"no such file: {paths[0]}")
    keep = ("token", "access_key", "secret_key", "scope", "mime")
    stream_opts = {k: opts[k] for k in keep if opts.get(k) is not None}
    if not stream_opts.get("token"):  # as the engine does: options, then the environment
        for name, env in (
            ("token", "NBUPLOAD_TOKEN"),
            ("access_key", "NBUPLOAD_ACCESS_KEY"),
            ("secret_key", "NBUPLOAD_SECRET_KEY"),
        ):
            if not stream_opts.get(name) and os.environ.get(env):
                stream_opts[name] = os.environ[env]
        if stream_opts.get("access_key") and stream_opts.get("secret_key"):
            stream_opts.pop("token", None)
    if args.timeout:
        stream_opts["timeout"] = args.timeout
    if args.retries is not None:
        stream_opts["retries"] = args.retries
    try:
        f = follow(
            paths[0],
            args.url,
            key=opts.get("key"),
            interval=args.interval,
            idle=args.idle,
            on_append=None if args.quiet else _say_position,
            **stream_opts,
        )
    except (AppendStreamError, ValueError, OSError) as exc:
        raise CommandError(str(exc), EXIT_FAILED if isinstance(exc, AppendStreamError) else 2) from None
    if not args.quiet:
        idle = f", until idle for {args.idle:g} s" if args.idle else ""
        print(
            f"nbupload: following {paths[0]} from byte {f.started} (every {args.interval:g} s{idle}; "
            "Ctrl-C stops)",
            file=sys.stderr,
        )
    try:
        f.wait()
    except KeyboardInterrupt:
        f.stop()
    if f.error is not None:
        print(f"nbupload: follow ended ({f.state}): {f.error}", file=sys.stderr)
        return EXIT_FAILED
    check = "hash verified" if f.verified else "hash not verified"
    print(
        f"nbupload: {paths[0]}: {f.position} bytes in the object ({f.state}, {check}, etag {f.hash})",
        file=sys.stderr,
    )
    return 0


def _say_position(position: int) -> None:
    print(f"nbupload: appended, object now {format_size(position)}", file=sys.stderr)


def _put_batch(args: argparse.Namespace, paths: list[str], opts: dict[str, Any]) -> int:
    """Several paths, folders or globs: one batch (nbupload/batch/), one progress line."""
    from ..batch import upload_many
    from ..batchpaths import NameClashError

    if opts.get("filename") or opts.get("key"):
        raise CommandError("--filename and --key name one file; for several use --prefix FOLDER")
    opts = {k: v for k, v in opts.items() if k not in ("filename", "key")}
    engine = _make_engine(args)
    try:
        try:
            batch = upload_many(
                paths,
                args.url,
                prefix=args.prefix or "",
                hidden=args.hidden,
                skip_unchanged=not args.no_skip,
                engine=engine,
                **opts,
            )
        except (NameClashError, FileNotFoundError, ValueError, TypeError, OSError) as exc:
            raise CommandError(str(exc)) from None
        return _wait_batch(batch, args.quiet)
    finally:
        engine.shutdown(wait=True, timeout=5)


def _wait_batch(batch: Any, quiet: bool) -> int:
    """Wait with one aggregate bar; Ctrl-C pauses (the same command resumes and skips)."""
    bar = None
    if not quiet:
        from tqdm import tqdm

        total = batch.snapshot().bytes_total
        print(f"nbupload: {batch.started_line()}", file=sys.stderr)
        bar = tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, dynamic_ncols=True
        )
    started = time.monotonic()
    try:
        while True:
            snap = batch.snapshot()
            if bar is not None:
                bar.n = min(snap.bytes_done, snap.bytes_total)
                bar.set_postfix_str(
                    f"{snap.files_done + snap.files_skipped}/{snap.files_total} files", refresh=False
                )
                bar.refresh()
            if snap.settled:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        batch.pause()
        batch.wait(15)
        if bar is not None:
            bar.close()
        print(
            f"nbupload: paused; `nbupload resume {batch.id}` (or the same command again) goes on "
            "where it stopped (finished files are skipped)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        batch.close()
    if bar is not None:
        bar.close()
    took = time.monotonic() - started
    lines = snap.report()  # the same lines %upload prints
    print(f"nbupload: {lines[0]} in {took:.1f} s", file=sys.stderr)
    for line in lines[1:]:
        print(f"nbupload: {line}", file=sys.stderr)
    return 0 if snap.state == "done" else EXIT_FAILED


def _put_session(args: argparse.Namespace, opts: dict[str, Any]) -> int:
    """``--file FIELD=PATH`` ...: one uploader session holding every file, one task."""
    from ..options import session_files

    if args.follow or args.prefix:
        raise CommandError("--follow and --prefix do not go with --file FIELD=PATH")
    try:
        source = session_files(args)
    except (ValueError, TypeError, OSError) as exc:
        raise CommandError(str(exc)) from None
    return _submit_and_wait(args, source, opts)


def _submit_and_wait(args: argparse.Namespace, source: Any, opts: dict[str, Any]) -> int:
    """One task (a file, or a multi-file session) on its own engine, waited for."""
    engine = _make_engine(args)
    try:
        try:
            task = engine.submit(source, args.url, **opts)
        except (ValueError, TypeError, OSError) as exc:
            raise CommandError(str(exc)) from None
        if not args.quiet:
            print(f"nbupload: task {task.id}: {task.name} -> {task.url}", file=sys.stderr)
        return _wait_all(engine, [task], args.quiet)
    finally:
        engine.shutdown(wait=True, timeout=5)


def cmd_resume(args: argparse.Namespace) -> int:
    from ..batch import resumable_alone
    from ..engine import TaskLockedError

    if not args.ids and not args.all:
        raise CommandError("give task ids or --all (see: nbupload ls)")
    if args.ids and args.all:
        raise CommandError("give task ids or --all, not both")
    engine = _make_engine(args)
    again = {
        "token": args.token,
        "access_key": args.access_key,
        "secret_key": args.secret_key,
        "headers": dict(args.header) or None,
        "fields": dict(args.field) or None,
        "url": args.url,
    }
    try:
        status, rest = _resume_batches(engine, args, again)
    except BaseException:
        engine.shutdown(wait=True, timeout=5)
        raise
    if status is not None and not rest and not args.all:
        engine.shutdown(wait=True, timeout=5)
        return status
    args.ids = rest
    protocols = {u.id: u.protocol for u in engine.unfinished()} if args.token else {}

    def again_for(task_id: str) -> dict[str, Any]:
        """``--token`` is the WCS token, or for an uploader task the UpToken header (A9)."""
        if args.token and protocols.get(task_id, "wcs-append") != "wcs-append":
            return {
                **again,
                "token": None,
                "headers": {**(again["headers"] or {}), "Authorization": f"UpToken {args.token}"},
            }
        return again

    busy: list[str] = []  # with --all: tasks another process runs (skipped, and said so)
    try:
        tasks = []
        if args.all and args.token:  # per task: the token travels differently by protocol
            entries = engine.unfinished()
            busy = [u.id for u in entries if u.locked]
            alone = set(resumable_alone(engine, entries))  # a batch's files went through their batch
            for task_id in protocols:
                if task_id not in busy and task_id in alone:
                    try:
                        tasks += engine.resume(task_id, **again_for(task_id))
                    except (KeyError, TaskLockedError):
                        continue
            for b in busy:
                print(f"nbupload: task {b} is being uploaded by another process; skipped", file=sys.stderr)
            if not tasks:
                if status is None:
                    print("nbupload: no unfinished tasks to resume", file=sys.stderr)
                return max(status or 0, EXIT_FAILED if busy else 0)
        elif args.all:
            entries = engine.unfinished()
            busy = [u.id for u in entries if u.locked]
            for task_id in resumable_alone(engine, entries):  # a batch's files went through their batch
                try:
                    tasks += engine.resume(task_id, **again)
                except (KeyError, TaskLockedError):
                    continue
            for b in busy:
                print(f"nbupload: task {b} is being uploaded by another process; skipped", file=sys.stderr)
            if not tasks:
                if status is None:
                    print("nbupload: no unfinished tasks to resume", file=sys.stderr)
                return max(status or 0, EXIT_FAILED if busy else 0)
        else:
            for task_id in args.ids:
                try:
                    tasks += engine.resume(task_id, **again_for(task_id))
                except KeyError:
                    raise CommandError(
                        f"no unfinished task {task_id} (see: nbupload ls)", EXIT_FAILED
                    ) from None
                except (TaskLockedError, ValueError) as exc:
                    raise CommandError(str(exc), EXIT_FAILED) from None
        if not args.quiet:
            for t in tasks:
                print(
                    f"nbupload: resuming task {t.id}: {t.name} ({format_size(t.acked)} of "
                    f"{format_size(t.total)} already there) -> {t.url}",
                    file=sys.stderr,
                )
        # the worst of all: a batch that failed (or was skipped as another process runs it)
        # fails the command even when every task resumed alongside finished
        return max(status or 0, EXIT_FAILED if busy else 0, _wait_all(engine, tasks, args.quiet))
    finally:
        engine.shutdown(wait=True, timeout=5)


def _resume_batches(
    engine: Any, args: argparse.Namespace, again: dict[str, Any]
) -> tuple[int | None, list[str]]:
    """Resume the batches among ``args.ids`` (every one with ``--all``) as batches, one after
    the other; ``(exit status or None when no batch was named, the ids left for tasks)``."""
    from ..batch import resume_batch, unfinished_batches
    from ..engine import TaskLockedError

    found = {b.id for b in unfinished_batches(engine)}
    wanted = sorted(found) if args.all else [i for i in args.ids if i in found]
    rest = [] if args.all else [i for i in args.ids if i not in found]
    if not wanted:
        return None, rest
    creds = {k: v for k, v in again.items() if v is not None}
    status = 0
    for batch_id in wanted:
        try:
            batch = resume_batch(batch_id, engine=engine, **creds)
        except TaskLockedError as exc:
            if not args.all:
                raise CommandError(str(exc), EXIT_FAILED) from None
            print(f"nbupload: batch {batch_id} is being run by another process; skipped", file=sys.stderr)
            status = EXIT_FAILED
            continue
        batch.wait_adopted()  # its files' journal entries are its own from now on
        status = max(status, _wait_batch(batch, args.quiet))
    return status, rest


def cmd_ls(args: argparse.Namespace) -> int:
    from ..batch import unfinished_batches
    from ..engine import Engine, EngineConfig

    engine = Engine(EngineConfig())
    try:
        items = engine.unfinished()
        groups = unfinished_batches(engine, entries=items)
        if args.json:
            import json

            owner = {task_id: b.id for b in groups for task_id in b.tasks}
            rows = [b.as_dict() for b in groups]
            rows += [{"kind": "task", **u.as_dict(), "batch": owner.get(u.id)} for u in items]
            print(json.dumps(rows, indent=1))
            return 0
        if not items and not groups:
            print("no unfinished uploads")
            return 0
        print(f"{'ID':<12}  {'PROTOCOL':<10}  {'DONE':>21}  {'STATE':<7}  NAME -> URL")
        for b in groups:
            done = f"{format_size(b.bytes_done)}/{format_size(b.bytes_total)}"
            name = f"batch of {b.files} files ({b.done}/{b.files} done)"
            print(f"{b.id:<12}  {b.protocol:<10}  {done:>21}  {b.state:<7}  {name} -> {b.url}")
        for u in items:
            done = f"{format_size(u.acked)}/{format_size(u.total)}"
            state = "running" if u.locked else "stopped"
            print(f"{u.id:<12}  {u.protocol:<10}  {done:>21}  {state:<7}  {u.name} -> {u.url}")
        return 0
    finally:
        engine.shutdown(wait=False)


def cmd_rm(args: argparse.Namespace) -> int:
    from ..engine import Engine, EngineConfig, TaskLockedError

    engine = Engine(EngineConfig())
    try:
        from ..batch import forget_batch

        for task_id in args.ids:
            try:
                gone = forget_batch(task_id, engine=engine)
            except KeyError:
                pass
            except TaskLockedError as exc:
                raise CommandError(str(exc), EXIT_FAILED) from None
            else:
                print(f"nbupload: forgot batch {task_id} (and {gone} unfinished file uploads of it)")
                continue
            try:
                engine.discard(task_id)
            except KeyError:
                raise CommandError(f"no unfinished task {task_id}", EXIT_FAILED) from None
            except TaskLockedError as exc:
                raise CommandError(str(exc), EXIT_FAILED) from None
            print(f"nbupload: forgot task {task_id}")
        return 0
    finally:
        engine.shutdown(wait=False)


def register(subparsers: Any) -> None:
    put = subparsers.add_parser(
        "put",
        help="upload files, folders or globs (resumable) and wait",
        description="Upload PATH... to URL and wait; Ctrl-C pauses (resume later). "
        "Several paths, folders (recursive) or globs are one batch: names keep "
        "their relative folders; a re-run skips files already uploaded.",
    )
    add_put_arguments(put)
    add_max_rate_argument(put)
    # --follow: only here (the batch options are shared with the magic: nbupload/options.py)
    put.add_argument(
        "--follow",
        action="store_true",
        help="wcs-append: keep appending what FILE gains until Ctrl-C or --idle",
    )
    put.add_argument(
        "--interval",
        type=positive_float,
        default=2.0,
        metavar="S",
        help="--follow: seconds between checks (default 2)",
    )
    put.add_argument(
        "--idle", type=positive_float, metavar="S", help="--follow: stop after S seconds without growth"
    )
    put.set_defaults(func=cmd_put)

    res = subparsers.add_parser(
        "resume",
        help="resume unfinished uploads (see nbupload ls)",
        description="Resume uploads left by an interrupted or killed nbupload/kernel.",
    )
    res.add_argument("ids", nargs="*", metavar="TASK_ID")
    res.add_argument("--all", action="store_true", help="every unfinished task")
    add_max_rate_argument(res)
    res.add_argument(
        "--streams",
        type=streams_arg,
        metavar="N",
        help="chunks of a file in flight at once (default: as the task was started, else 4)",
    )
    _add_credentials(res)
    res.add_argument(
        "--header",
        action="append",
        type=parse_header,
        default=[],
        metavar="'K: V'",
        help="a secret header to send again (not kept in the journal)",
    )
    res.add_argument(
        "--field",
        action="append",
        type=parse_field,
        default=[],
        metavar="K=V",
        help="a secret form field to send again (not kept in the journal)",
    )
    res.add_argument(
        "--url", help="the full URL again, when its query held a secret (not kept in the journal)"
    )
    _add_common(res)
    res.set_defaults(func=cmd_resume)

    ls = subparsers.add_parser("ls", help="list unfinished uploads")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_ls)

    rm = subparsers.add_parser("rm", help="forget unfinished uploads")
    rm.add_argument("ids", nargs="+", metavar="TASK_ID")
    rm.set_defaults(func=cmd_rm)
