"""``nbupload put``, ``resume``, ``ls`` and ``rm``: the engine on the command line.

:func:`add_put_arguments` and :func:`put_options` are shared with the ``%upload`` magic,
which takes the same options as ``put``.
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
from typing import Any

from ..units import format_size, parse_size
from . import CommandError

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


def parse_field(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"invalid field {text!r}: expected NAME=VALUE")
    return name.strip(), value


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c in name for c in " \t\r\n"):
        raise argparse.ArgumentTypeError(f"invalid header {text!r}: expected 'Name: value'")
    return name.strip(), value.strip()


def _size(text: str) -> int:
    try:
        n = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if n <= 0:
        raise argparse.ArgumentTypeError("chunk size must be positive")
    return n


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return v


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retries", type=int, metavar="N", help="tries without progress before giving up (default 8)")
    parser.add_argument("--timeout", type=_positive_float, metavar="S",
                        help="network timeout per phase (connect, send, answer) and stall limit, seconds")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _add_credentials(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", help="WCS upload token (or NBUPLOAD_TOKEN)")
    parser.add_argument("--ak", dest="access_key", metavar="AK", help="WCS access key (or NBUPLOAD_ACCESS_KEY)")
    parser.add_argument("--sk", dest="secret_key", metavar="SK", help="WCS secret key (or NBUPLOAD_SECRET_KEY)")


def add_put_arguments(parser: argparse.ArgumentParser, *, source: bool = True) -> None:
    """The ``put`` options (FILE URL and the rest); the magic reuses them."""
    if source:
        parser.add_argument("file", metavar="FILE", help="file to upload")
    parser.add_argument("url", metavar="URL", help="upload URL (for wcs-append: the upload domain)")
    parser.add_argument("--protocol", "-p", choices=("uploader", "plain", "wcs-append"), default="uploader")
    parser.add_argument("--chunk-size", type=_size, metavar="SIZE", help="bytes per request, e.g. 4MiB (default)")
    parser.add_argument("--name", default="file", metavar="FIELD", help="form field of the file (default: file)")
    parser.add_argument("--filename", metavar="NAME", help="file name sent to the server")
    parser.add_argument("--field", action="append", type=parse_field, default=[], metavar="K=V",
                        help="extra form field (repeatable; x:NAME variables for WCS)")
    parser.add_argument("--header", action="append", type=parse_header, default=[], metavar="'K: V'",
                        help="extra HTTP header (repeatable)")
    _add_credentials(parser)
    parser.add_argument("--scope", help="WCS scope, bucket or bucket:key (with --ak/--sk)")
    parser.add_argument("--key", help="WCS object key")
    parser.add_argument("--mime", metavar="TYPE", help="content type of the file")
    _add_common(parser)


def put_parser(prog: str = "nbupload put") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Upload a file and wait for it.")
    add_put_arguments(parser)
    return parser


def put_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for ``Engine.submit`` / ``nbupload.upload`` from parsed put options."""
    if args.token and (args.access_key or args.secret_key):
        raise CommandError("give either --token or --ak/--sk/--scope, not both")
    if args.protocol != "wcs-append" and (args.token or args.access_key or args.secret_key or args.scope or args.key):
        raise CommandError("--token, --ak, --sk, --scope and --key are for --protocol wcs-append")
    opts: dict[str, Any] = {
        "protocol": args.protocol,
        "name": args.name,
        "filename": args.filename,
        "fields": dict(args.field) or None,
        "headers": dict(args.header) or None,
        "key": args.key,
        "token": args.token,
        "access_key": args.access_key,
        "secret_key": args.secret_key,
        "scope": args.scope,
        "mime": args.mime,
    }
    if args.chunk_size:
        opts["chunk_size"] = args.chunk_size
    return opts


def engine_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``EngineConfig`` changes from ``--retries`` and ``--timeout``."""
    out: dict[str, Any] = {}
    if getattr(args, "retries", None) is not None:
        if args.retries < 0:
            raise CommandError("--retries must not be negative")
        out["retries"] = args.retries
    if getattr(args, "timeout", None):
        t = args.timeout
        out.update(connect_timeout=t, read_timeout=t, write_timeout=t, stall_timeout=t)
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
            bar = tqdm(total=snap.total, initial=snap.acked, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=snap.name[:30],
                       file=sys.stderr, leave=True, dynamic_ncols=True, position=len(self._bars))
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


def _make_engine(args: argparse.Namespace):
    from ..engine import Engine, EngineConfig

    try:
        return Engine(EngineConfig(**engine_settings(args)))
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _wait_all(engine, tasks, quiet: bool) -> int:
    """Wait for tasks; Ctrl-C pauses them (the journal keeps them) and says how to resume."""
    from ..engine import TaskEvent, TaskState

    bars = ProgressBars(enabled=not quiet)
    unsubscribe = engine.subscribe(bars)
    for t in tasks:  # draw the bars at once
        bars(TaskEvent("state", t.snapshot()))
    try:
        try:
            with _sigterm_pauses():
                while any(t.state not in (TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED, TaskState.PAUSED)
                          for t in tasks):
                    time.sleep(0.1)
        except (KeyboardInterrupt, _Terminated) as stop:
            for t in tasks:
                t.pause()
            for t in tasks:
                try:
                    t.wait(10)
                except TimeoutError:
                    pass
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
            if err is not None and (err.retryable or err.code in ("needs-credentials", "needs-secrets")) and t.persistent:
                msg += f"\nnbupload: the journal keeps it; try again with: nbupload resume {t.id}"
            elif t.persistent:
                engine.discard(t.id)
            print(msg, file=sys.stderr)
        elif snap.state is TaskState.PAUSED:
            print(f"nbupload: {snap.name} paused; resume with: nbupload resume {t.id}", file=sys.stderr)
        else:
            print(f"nbupload: {snap.name} {snap.state.value}", file=sys.stderr)
    return status


def _done_line(snap) -> str:
    took = (snap.finished_at or 0) - (snap.started_at or 0)
    extra = ""
    if isinstance(snap.result, dict) and snap.result.get("hash"):
        extra = f", etag {snap.result['hash']}"
    return f"nbupload: {snap.name}: {format_size(snap.total)} uploaded in {took:.1f} s ({snap.protocol}{extra})"


def cmd_put(args: argparse.Namespace) -> int:
    opts = put_options(args)
    if not os.path.isfile(args.file):
        raise CommandError(f"no such file: {args.file}")
    engine = _make_engine(args)
    try:
        try:
            task = engine.submit(args.file, args.url, **opts)
        except (ValueError, TypeError, OSError) as exc:
            raise CommandError(str(exc)) from None
        if not args.quiet:
            print(f"nbupload: task {task.id}: {task.name} -> {task.url}", file=sys.stderr)
        return _wait_all(engine, [task], args.quiet)
    finally:
        engine.shutdown(wait=True, timeout=5)


def cmd_resume(args: argparse.Namespace) -> int:
    from ..engine import TaskLockedError

    if not args.ids and not args.all:
        raise CommandError("give task ids or --all (see: nbupload ls)")
    if args.ids and args.all:
        raise CommandError("give task ids or --all, not both")
    engine = _make_engine(args)
    again = {"token": args.token, "access_key": args.access_key, "secret_key": args.secret_key,
             "headers": dict(args.header) or None, "fields": dict(args.field) or None, "url": args.url}
    try:
        tasks = []
        if args.all:
            busy = [u.id for u in engine.unfinished() if u.locked]
            tasks = engine.resume(None, **again)
            for b in busy:
                print(f"nbupload: task {b} is being uploaded by another process; skipped", file=sys.stderr)
            if not tasks:
                print("nbupload: no unfinished tasks to resume", file=sys.stderr)
                return 0 if not busy else EXIT_FAILED
        else:
            for task_id in args.ids:
                try:
                    tasks += engine.resume(task_id, **again)
                except KeyError:
                    raise CommandError(f"no unfinished task {task_id} (see: nbupload ls)", EXIT_FAILED) from None
                except (TaskLockedError, ValueError) as exc:
                    raise CommandError(str(exc), EXIT_FAILED) from None
        if not args.quiet:
            for t in tasks:
                print(f"nbupload: resuming task {t.id}: {t.name} ({format_size(t.acked)} of "
                      f"{format_size(t.total)} already there) -> {t.url}", file=sys.stderr)
        return _wait_all(engine, tasks, args.quiet)
    finally:
        engine.shutdown(wait=True, timeout=5)


def cmd_ls(args: argparse.Namespace) -> int:
    from ..engine import Engine, EngineConfig

    engine = Engine(EngineConfig())
    try:
        items = engine.unfinished()
        if args.json:
            import json

            print(json.dumps([u.as_dict() for u in items], indent=1))
            return 0
        if not items:
            print("no unfinished uploads")
            return 0
        print(f"{'ID':<12}  {'PROTOCOL':<10}  {'DONE':>21}  {'STATE':<7}  NAME -> URL")
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
        for task_id in args.ids:
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
    put = subparsers.add_parser("put", help="upload a file (resumable) and wait for it",
                                description="Upload FILE to URL and wait; Ctrl-C pauses (resume later).")
    add_put_arguments(put)
    put.set_defaults(func=cmd_put)

    res = subparsers.add_parser("resume", help="resume unfinished uploads (see nbupload ls)",
                                description="Resume uploads left by an interrupted or killed nbupload/kernel.")
    res.add_argument("ids", nargs="*", metavar="TASK_ID")
    res.add_argument("--all", action="store_true", help="every unfinished task")
    _add_credentials(res)
    res.add_argument("--header", action="append", type=parse_header, default=[], metavar="'K: V'",
                     help="a secret header to send again (not kept in the journal)")
    res.add_argument("--field", action="append", type=parse_field, default=[], metavar="K=V",
                     help="a secret form field to send again (not kept in the journal)")
    res.add_argument("--url", help="the full URL again, when its query held a secret (not kept in the journal)")
    _add_common(res)
    res.set_defaults(func=cmd_resume)

    ls = subparsers.add_parser("ls", help="list unfinished uploads")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_ls)

    rm = subparsers.add_parser("rm", help="forget unfinished uploads")
    rm.add_argument("ids", nargs="+", metavar="TASK_ID")
    rm.set_defaults(func=cmd_rm)
