"""The ``%upload`` line magic: start, watch and steer uploads from a notebook.

IPython expands ``$var`` and ``{expr}`` in the line before the magic sees it; the words are
then split like a shell would and parsed by argparse, whose errors become one-line
:class:`~IPython.core.error.UsageError` messages instead of tracebacks.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import re
import shlex
import sys
import time
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from ..engine.state import ACTIVE_STATES, TaskState, can
from .options import HelpShown, MagicParser, add_put_arguments, put_options

if TYPE_CHECKING:
    from .session import UploadSession

__all__ = ["UploadMagics", "build_parsers", "help_transformer", "strip_comment", "usage_text"]

_SUBCOMMANDS = ("list", "ls", "pause", "resume", "cancel", "retry", "panel", "server", "token")
_SIZE_UNITS = "bytes or a unit such as 512KiB, 4MiB"


def _size(text: str) -> int:
    from ..units import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parsers() -> dict[str, MagicParser]:
    """One parser per form of ``%upload``; ``put`` is the default form."""
    put = MagicParser(
        prog="%upload",
        usage="%%upload PATH... [URL] [options]   |   %%upload --var NAME [URL] --as FILENAME [options]"
        "   |   %%upload --file FIELD=PATH ... [URL] [options]",
        description="Upload a file from the kernel's filesystem (or an in-memory object with --var) in the "
        "background and show its live row. Several paths, folders (recursive) and globs (quoted or not) "
        "are one batch with one row. URL defaults to Uploader.default_url or the demo server.",
    )
    put.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="file(s) on the kernel's filesystem; folders and globs make a batch; then the URL",
    )
    put.add_argument("--var", metavar="NAME", help="upload the object bound to NAME in the namespace")
    put.add_argument(
        "--as",
        dest="as_name",
        metavar="FILENAME",
        help="format and name for --var: data.csv, data.parquet, data.npy, data.json, or any "
        "name for bytes/str",
    )
    put.add_argument(
        "--wait", action="store_true", help="block until the task ends; interrupting pauses it (resumable)"
    )
    put.add_argument("-o", "--output", action="store_true", help="return the Task object")
    put.add_argument("-q", "--quiet", action="store_true", help="do not display the live row")
    add_put_arguments(put)

    parsers = {"put": put}
    lst = MagicParser(
        prog="%upload list", description="List the kernel's tasks and unfinished journal entries."
    )
    parsers["list"] = lst
    for verb, what in (
        ("pause", "Pause"),
        ("resume", "Resume (also tasks found in the journal)"),
        ("cancel", "Cancel"),
        ("retry", "Retry a failed"),
    ):
        p = MagicParser(prog=f"%upload {verb}", description=f"{what} task(s).")
        p.add_argument("ids", nargs="+", metavar="ID|all", help="task ids, or 'all'")
        parsers[verb] = p
    parsers["panel"] = MagicParser(prog="%upload panel", description="Show the upload panel.")
    srv = MagicParser(
        prog="%upload server",
        description="The embedded reference server: start it to try everything locally (it gets a "
        "generated demo WCS key pair and becomes the default URL).",
    )
    srv.add_argument("action", choices=("start", "stop", "status"))
    srv.add_argument("--root", metavar="DIR", help="where uploaded files land (default: a temp dir)")
    srv.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: any free port)")
    srv.add_argument(
        "--max-file-size", type=_size, metavar="SIZE", help=f"largest file accepted ({_SIZE_UNITS})"
    )
    srv.add_argument("--throttle", type=_size, metavar="RATE", help="ingest at most RATE bytes/s (for demos)")
    srv.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a self-signed certificate this kernel's uploads trust",
    )
    parsers["server"] = srv
    tok = MagicParser(
        prog="%upload token",
        description="Make a WCS upload token and bind it to a variable (the token and the secret key are "
        "never echoed). Keys: --ak with --sk, --sk-env VAR or $NBUPLOAD_SECRET_KEY (else the secret is asked "
        "for); without --ak, the demo server's key pair.",
    )
    tok.add_argument("--scope", default="demo", help="bucket or bucket:key (default: demo)")
    tok.add_argument(
        "--expires", type=float, default=3600.0, metavar="SECONDS", help="lifetime (default 3600)"
    )
    tok.add_argument("--fsize-limit", type=_size, default=0, metavar="SIZE", help="largest object (0: none)")
    tok.add_argument("--return-body", metavar="TPL", help="returnBody template, e.g. 'key=$(key)'")
    tok.add_argument("--ak", dest="access_key", metavar="AK", help="access key")
    tok.add_argument("--sk", dest="secret_key", metavar="SK", help="secret key (prefer $var or --sk-env)")
    tok.add_argument("--sk-env", metavar="VAR", help="read the secret key from this environment variable")
    tok.add_argument(
        "--var", default="upload_token", metavar="NAME", help="variable to bind (default upload_token)"
    )
    parsers["token"] = tok
    return parsers


def usage_text() -> str:
    parsers = build_parsers()
    examples = [
        "Examples:",
        "  %upload server start                 a local demo server (becomes the default URL)",
        "  %upload data.bin                     upload to the default URL, show a live row",
        "  %upload data.bin https://host/upload --chunk-size 8MiB",
        "  %upload --var df --as df.parquet     upload a DataFrame (or bytes, an array, JSON)",
        "  %upload panel                        every upload, with buttons and a form",
        "  %upload results/ --prefix run7       a folder (or a glob, several files) as one batch",
        "  %upload pause all    /    %upload resume ID",
        "  %upload server?   %upload token?   %upload list?     help on one form",
        "",
    ]
    forms = [
        "%upload FILE [URL] [options]      upload a file in the background, show its live row",
        "%upload PATH... [URL] [options]   files, folders, globs ('results/*.csv'): one batch, one row",
        "%upload --var NAME URL --as F     upload an in-memory object (bytes/str, DataFrame, array, JSON)",
        "%upload list                      the kernel's tasks (and unfinished ones in the journal)",
        "%upload pause|resume|cancel|retry ID|all",
        "%upload panel                     the upload panel (rows, buttons, a form, a file picker)",
        "%upload server start|stop|status  the embedded reference server (demo, no account needed)",
        "%upload token --scope BUCKET      make a WCS upload token",
    ]
    out = ["Resumable uploads from the notebook.", "", *examples, *forms, ""]
    for name in ("put", "server", "token"):
        out += [parsers[name].format_help(), ""]
    out.append("Settings: %config Uploader  (e.g. %config Uploader.chunk_size = 8 * 2**20)")
    return "\n".join(out)


_HELP_LINE = re.compile(r"^(\s*)%upload((?:\s+[A-Za-z-]+)*)\s*\?{1,2}\s*$")


def help_transformer(lines: list[str]) -> list[str]:
    """``%upload server?`` -> ``%upload server --help`` (IPython would look for an object ``server``).

    Registered in ``shell.input_transformers_cleanup``, which runs before IPython's own
    ``?`` handling; ``%upload?`` alone keeps IPython's help (the magic's docstring).
    """
    out = []
    for line in lines:
        m = _HELP_LINE.match(line)
        words = m.group(2).split() if m else []
        if m and words and words[0] in _SUBCOMMANDS:
            out.append(f"{m.group(1)}%upload {' '.join(words)} --help\n")
        else:
            out.append(line)
    return out


def strip_comment(line: str) -> str:
    """Drop a trailing ``# comment`` as a shell would: only a ``#`` that starts a word,
    outside quotes (``http://h/u#frag`` and ``k=#v`` keep theirs)."""
    quote = None
    word_start = True
    escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and word_start:
            return line[:i]
        word_start = quote is None and not escaped and ch.isspace()
    return line


@magics_class
class UploadMagics(Magics):
    """``%upload``; see ``%upload?``."""

    def __init__(self, shell: Any, session: UploadSession) -> None:
        super().__init__(shell)
        self.session = session
        self.parsers = build_parsers()

    def _user_ns(self) -> dict[str, Any]:
        """The user's namespace (the magics are registered with a shell, so there is one)."""
        if self.shell is None:
            raise UsageError("%upload needs an IPython shell")
        ns: dict[str, Any] = self.shell.user_ns
        return ns

    @line_magic
    def upload(self, line: str = "") -> Any:
        try:
            argv = shlex.split(strip_comment(line))
        except ValueError as exc:
            raise UsageError(f"%upload: {exc}") from None
        if not argv:
            raise UsageError(
                "%upload needs arguments: %upload FILE URL, %upload list, %upload panel ... (see %upload?)"
            )
        verb = argv[0]
        try:
            if verb in _SUBCOMMANDS:
                verb = "list" if verb == "ls" else verb
                args = self.parsers[verb].parse_args(argv[1:])
                return getattr(self, f"_do_{verb}")(args)
            return self._do_put(self.parsers["put"].parse_args(argv))
        except HelpShown as shown:
            print(shown.args[0])
            return None

    upload.__doc__ = usage_text()

    # -- put ------------------------------------------------------------------------------
    def _do_put(self, args: argparse.Namespace) -> Any:
        from ..batchpaths import split_url

        s = self.session
        try:  # the rule the CLI uses: the last word is the URL when it is one (batchpaths.py)
            paths, given_url = split_url(args.paths)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        options = put_options(args, default_protocol=s.config.protocol)
        protocol = options["protocol"]
        spool = None
        if args.var:
            if args.files:
                raise UsageError("--var and --file FIELD=PATH do not go together")
            if paths:
                raise UsageError("with --var, give only the URL (the object replaces FILE)")
            url = given_url or s.default_url(protocol)
            if not args.as_name:
                raise UsageError(
                    "--var needs --as FILENAME (data.csv, data.parquet, data.npy, data.json ...)"
                )
            if args.var not in self._user_ns():
                raise UsageError(f"no variable named {args.var!r} in the namespace")
            from ..datasets import DatasetError, to_dataset

            try:
                data = to_dataset(self._user_ns()[args.var], args.as_name, spool_dir=s.spool_dir())
            except DatasetError as exc:
                raise UsageError(str(exc)) from None
            source, spool = data.source, data.spool
            options.setdefault("filename", data.filename)
            options.setdefault("mime", data.mime)
        elif args.files:  # --file FIELD=PATH ...: one multi-file session
            if args.as_name:
                raise UsageError("--as goes with --var")
            if paths:
                raise UsageError("with --file FIELD=PATH, give only the URL (the fields replace FILE)")
            from ..errors import FileFieldError
            from ..options import session_files

            try:
                source = session_files(args)
            except FileFieldError as exc:
                raise UsageError(str(exc)) from None
            url = given_url or s.default_url(protocol)
        else:
            if args.as_name:
                raise UsageError("--as goes with --var")
            if not paths:
                raise UsageError("give FILE and URL (see %upload?)")
            url = given_url or s.default_url(protocol)
            single = len(paths) == 1 and not args.prefix and not _is_batch_path(paths[0])
            if not single:
                return self._do_put_batch(args, paths, url, options)
            path = os.path.expanduser(paths[0])
            if not os.path.isfile(path):
                raise UsageError(f"no such file: {paths[0]}")
            source = path
        if not url:
            raise UsageError(
                "no URL: give one, set %config Uploader.default_url = '...', "
                "or start the demo server with %upload server start"
            )
        try:
            task = s.submit(source, url, spool=spool, **options)
        except (ValueError, TypeError, OSError) as exc:
            if spool is not None:
                spool.unlink(missing_ok=True)
            raise UsageError(f"cannot start the upload: {exc}") from None
        if not args.quiet:
            s.display_row(task)
        if args.wait:
            self._wait(task)
        return task if args.output else None

    def _do_put_batch(
        self, args: argparse.Namespace, paths: list[str], url: str, options: dict[str, Any]
    ) -> Any:
        """Several paths, folders or globs: one batch (``nbupload.batch.upload_many``, as
        ``nbupload put`` does), one row, the CLI's messages."""
        from ..batchpaths import NameClashError

        s = self.session
        if not url:
            raise UsageError(
                "no URL: give one, set %config Uploader.default_url = '...', "
                "or start the demo server with %upload server start"
            )
        if options.get("filename") or options.get("key"):
            raise UsageError("--filename and --key name one file; for several use --prefix FOLDER")
        try:
            batch = s.submit_batch(
                paths,
                url,
                prefix=args.prefix or "",
                hidden=args.hidden,
                skip_unchanged=not args.no_skip,
                **options,
            )
        except (NameClashError, FileNotFoundError, ValueError, TypeError, OSError) as exc:
            raise UsageError(f"cannot start the upload: {exc}") from None
        print(f"nbupload: {batch.started_line()}")
        if not args.quiet:
            s.display_batch(batch)
        if args.wait:
            self._wait_batch(batch)
        return batch if args.output else None

    def _wait_batch(self, batch: Any) -> None:
        s = self.session
        try:
            while not batch.snapshot().settled:
                with contextlib.suppress(TimeoutError):
                    batch.wait(timeout=0.1)
                s.panel_controller.flush()
        except KeyboardInterrupt:
            batch.pause()
            print(
                f"nbupload: paused batch {batch.id}; `%upload resume {batch.id}` goes on where it stopped",
                file=sys.stderr,
            )
            return
        s.engine.flush_events()
        s.panel_controller.flush(force=True)
        lines = batch.snapshot().report()  # the lines nbupload put prints
        print(f"nbupload: {lines[0]}")
        for line in lines[1:]:
            print(f"nbupload: {line}", file=sys.stderr)

    def _wait(self, task: Any) -> None:
        s = self.session
        try:
            while task.state in ACTIVE_STATES:
                _wait_briefly(task, 0.1)
                s.panel_controller.flush()
        except KeyboardInterrupt:
            task.pause()
            s.pump.push(task.snapshot())
            s.panel_controller.flush(force=True)
            print(
                f"nbupload: paused {task.id}; `%upload resume {task.id}` goes on where it stopped",
                file=sys.stderr,
            )
            return
        # the row shows how the task ended before the cell does: the engine's last state event
        # may still be on its way to the pump (the task's state changes before it is delivered)
        s.engine.flush_events()
        s.panel_controller.flush(force=True)
        snap = task.snapshot()
        if getattr(self.shell, "kernel", None) is None:  # a console: no live row, say how it ended
            from ..panel.format import text_line

            print(text_line(snap))
        if snap.state is TaskState.FAILED:
            print(f"nbupload: {snap.name} [{snap.id}] failed: {snap.error}", file=sys.stderr)

    # -- list / steer ------------------------------------------------------------------------
    def _do_list(self, _args: argparse.Namespace) -> None:
        from ..panel.batchrow import owner
        from ..panel.format import summary_text, text_line

        for batch in self.session.batches():
            print(f"batch {batch.id}: {batch.snapshot().describe()} -> {batch.url.split('?', 1)[0]}")
        snaps = [t.snapshot() for t in self.session.engine.tasks() if not owner(t.id)]
        if len(snaps) > 1:
            print(summary_text(snaps))
        for snap in snaps:
            print(text_line(snap))
        offers, waiting = self.session.journal_view()  # the journal read once
        here = {snap.id for snap in snaps} | {b.id for b in waiting}  # batches: listed below
        offers = [o for o in offers if o.id not in here]
        if offers or waiting:
            print(f"unfinished in the journal ({len(offers) + len(waiting)}; `%upload resume all`):")
            for b in waiting:
                print(f"  {b.text}")
            for offer in offers:
                print(f"  {offer.text}")
        if not snaps and not offers and not waiting and not self.session.batches():
            print("no uploads yet")

    def _targets(self, ids: list[str], verb: str) -> list[Any]:
        from ..panel.batchrow import owner

        engine = self.session.engine
        if ids == ["all"]:  # a batch's files are steered through their batch
            return [t for t in engine.tasks() if not owner(t.id)]
        tasks = []
        for task_id in ids:
            try:
                tasks.append(engine.get(task_id))
            except KeyError:
                raise UsageError(f"no task {task_id!r} in this kernel (see %upload list)") from None
        return tasks

    def _steer_batches(self, args: argparse.Namespace, verb: str) -> list[str]:
        """Act on the batches among ``args.ids`` (every live one with ``all``); the ids left."""
        batches = self.session.batches()
        by_id = {b.id: b for b in batches}
        chosen = batches if args.ids == ["all"] else [by_id[i] for i in args.ids if i in by_id]
        for batch in chosen:
            getattr(batch, verb)()
            print(f"{_past(verb)} batch {batch.id}: {batch.snapshot().describe()}")
        if args.ids == ["all"]:
            return ["all"]
        return [i for i in args.ids if i not in by_id]

    def _steer(self, args: argparse.Namespace, verb: str) -> None:
        ids = self._steer_batches(args, verb)
        if not ids:
            return
        args.ids = ids
        acted = []
        for task in self._targets(args.ids, verb):
            if not can(verb, task.state):
                if args.ids != ["all"]:
                    print(f"nothing to {verb} for {task.id}: it is {task.state.value}")
                continue
            try:
                if verb == "retry":
                    self.session.resume(task.id)
                else:
                    getattr(task, verb)()
            except (RuntimeError, ValueError) as exc:
                raise UsageError(f"cannot {verb} {task.id}: {exc}") from None
            self.session.pump.push(task.snapshot())
            acted.append(task.id)
        print(
            f"{_past(verb)} {len(acted)} task{'s' if len(acted) != 1 else ''}"
            + (f": {', '.join(acted)}" if acted else "")
        )

    def _do_pause(self, args: argparse.Namespace) -> None:
        self._steer(args, "pause")

    def _do_cancel(self, args: argparse.Namespace) -> None:
        self._steer(args, "cancel")

    def _do_retry(self, args: argparse.Namespace) -> None:
        self._steer(args, "retry")

    def _do_resume(self, args: argparse.Namespace) -> None:
        s = self.session
        live_ids = {b.id for b in s.batches()}
        live = len(live_ids) if args.ids == ["all"] else sum(i in live_ids for i in args.ids)
        ids = self._steer_batches(args, "resume")
        journaled = s.unfinished_batches()
        waiting = {b.id for b in journaled}
        stopped = sorted(b.id for b in journaled if b.state != "running")  # "all": not those elsewhere
        from_journal = stopped if ids == ["all"] else [i for i in ids if i in waiting]
        for batch_id in from_journal:
            try:
                batch = s.resume_batch(batch_id)
            except (KeyError, ValueError, OSError, RuntimeError) as exc:
                raise UsageError(f"cannot resume batch {batch_id}: {exc}") from None
            print(f"resumed batch {batch.id} from the journal: {batch.snapshot().describe()}")
            s.display_batch(batch)
        if ids != ["all"]:
            ids = [i for i in ids if i not in waiting]
            if not ids:
                return
        args.ids = ids
        if args.ids == ["all"]:
            tasks = s.resume(None)
        else:
            tasks = []
            for task_id in args.ids:
                try:
                    tasks += s.resume(task_id)
                except KeyError:
                    raise UsageError(
                        f"no task {task_id!r} here or in the journal (see %upload list)"
                    ) from None
                except (RuntimeError, ValueError, OSError) as exc:
                    raise UsageError(f"cannot resume {task_id}: {exc}") from None
        done = {t.id for t in tasks}
        s.panel_controller.set_offers([o for o in s.offers if o.id not in done])
        for task in tasks:
            s.pump.push(task.snapshot())
        if not tasks and (live or from_journal):
            return  # "resumed batch ..." said it all
        print(
            f"resumed {len(tasks)} task{'s' if len(tasks) != 1 else ''}"
            + (f": {', '.join(sorted(done))}" if done else "")
        )

    def _do_panel(self, _args: argparse.Namespace) -> None:
        self.session.display_panel()

    # -- server / token ----------------------------------------------------------------------
    def _do_server(self, args: argparse.Namespace) -> None:
        s = self.session
        if args.action == "start":
            if s.server is not None:
                print(f"already running: {s.server.base_url} (root {s.server.handle.root})")
                return
            kwargs: dict[str, Any] = {"port": args.port}
            if args.root:
                os.makedirs(args.root, exist_ok=True)
                kwargs["root"] = args.root
            if args.max_file_size is not None:
                kwargs["max_file_size"] = args.max_file_size
            if args.throttle is not None:
                kwargs["throttle"] = args.throttle
            try:
                if args.tls:
                    from ..server.tls import self_signed

                    cert = self_signed()
                    kwargs["ssl"] = cert.context
                    s.engine.configure(verify=str(cert.ca_file))  # this kernel trusts it
                    print(f"self-signed certificate; its authority: {cert.ca_file} (trusted by this kernel)")
                server = s.start_server(**kwargs)
            except (OSError, ValueError, RuntimeError) as exc:
                raise UsageError(f"cannot start the server: {exc}") from None
            print(
                f"nbupload reference server at {server.base_url}\n"
                f"  uploader URL: {server.handle.upload_url}   (default URL of %upload and the panel)\n"
                f"  WCS append:   {server.base_url}  access key "
                f"{server.access_key} (demo secret kept in the kernel)\n"
                f"  files land in {server.handle.root}"
            )
            resumed = s.resume_for_server()
            if resumed:
                print(
                    f"resumed {len(resumed)} upload{'s' if len(resumed) != 1 else ''} an earlier demo "
                    f"server on this root left unfinished ({', '.join(t.id for t in resumed)})"
                )
        elif args.action == "stop":
            paused = s.stop_server()
            if paused is None:
                print("not running")
            elif paused:
                print(
                    f"stopped the demo server; paused {len(paused)} "
                    f"upload{'s' if len(paused) != 1 else ''} to it "
                    f"({', '.join(paused)}): `%upload resume ID` once a server runs at the same URL"
                )
            else:
                print("stopped the demo server (no upload was running to it)")
        else:
            print(repr(s.server) if s.server is not None else "not running (`%upload server start`)")

    def _do_token(self, args: argparse.Namespace) -> None:
        from ..protocols.wcs import PutPolicy, make_token, redact_token

        s = self.session
        if args.access_key:
            access_key = args.access_key
            secret = args.secret_key
            if not secret and args.sk_env:
                secret = os.environ.get(args.sk_env)
                if not secret:
                    raise UsageError(f"environment variable {args.sk_env} is not set")
            secret = (
                secret
                or os.environ.get("NBUPLOAD_SECRET_KEY")
                or getpass.getpass(f"WCS secret key for {access_key}: ")
            )
        elif s.server is not None:
            access_key, secret = s.server.access_key, s.server.secret_key
        else:
            raise UsageError(
                "give --ak (and --sk-env VAR, or type the secret when asked), "
                "or start the demo server first: %upload server start"
            )
        deadline = int((time.time() + args.expires) * 1000)
        policy = PutPolicy(
            scope=args.scope, deadline=deadline, fsize_limit=args.fsize_limit, return_body=args.return_body
        )
        try:
            token = make_token(access_key, secret, policy)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        self._user_ns()[args.var] = token
        print(
            f"WCS token for scope {args.scope!r}, valid {args.expires:g} s: {redact_token(token)} "
            f"-> bound to `{args.var}` (use: --token ${args.var})"
        )


def _is_batch_path(text: str) -> bool:
    """A folder, or a glob that is not an existing path: a batch even when it is one word."""
    from ..batchpaths import has_magic

    path = os.path.expanduser(text)
    return os.path.isdir(path) or (not os.path.lexists(path) and has_magic(path))


def _past(verb: str) -> str:
    return {"pause": "paused", "cancel": "cancelled", "retry": "retried"}.get(verb, verb + "d")


def _wait_briefly(task: Any, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        task.wait(timeout=seconds)
