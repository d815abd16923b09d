"""``nbupload serve``, ``nbupload token``, ``nbupload etag``: the reference server and WCS helpers."""

from __future__ import annotations

import argparse
import os
import signal
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..units import parse_size
from . import CommandError

__all__ = ["register"]

SECRET_ENV = "NBUPLOAD_SECRET_KEY"
_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``"24h"`` -> 86400.0; plain numbers are seconds."""
    value = str(text).strip().lower()
    unit = value[-1:] if value[-1:] in _DURATION_UNITS and not value[-1:].isdigit() else ""
    number = value[: len(value) - len(unit)] if unit else value
    try:
        seconds = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use seconds or 30m, 24h, 7d") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"duration must be positive: {text!r}")
    return seconds


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rate(text: str) -> float:
    text = text.strip()
    if text.lower().endswith("/s"):
        text = text[:-2]
    size = _size(text)
    if size <= 0:
        raise argparse.ArgumentTypeError("throttle rate must be positive")
    return float(size)


def _credential(text: str) -> tuple[str, str]:
    ak, sep, sk = text.partition(":")
    if not sep or not ak or not sk:
        # never echo the value: it holds a secret
        raise argparse.ArgumentTypeError("credentials must be given as ACCESS_KEY:SECRET_KEY")
    return ak, sk


def _load_credentials(args: argparse.Namespace) -> dict[str, str]:
    creds: dict[str, str] = dict(args.credentials or [])
    if args.credentials_file:
        path = Path(args.credentials_file)
        try:
            lines = path.read_text("utf-8").splitlines()
        except OSError as exc:
            raise CommandError(f"cannot read credentials file {path}: {exc.strerror}") from None
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            ak, sep, sk = line.partition(":")
            if not sep or not ak.strip() or not sk.strip():
                raise CommandError(f"{path}:{number}: expected ACCESS_KEY:SECRET_KEY")
            creds[ak.strip()] = sk.strip()
    return creds


def _default_root() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("nbupload")) / "uploads"


def _serve(args: argparse.Namespace) -> int:
    try:
        from ..server import ServerConfig, start_server
        from ..server.runner import run_workers
    except ImportError:
        raise CommandError(
            "the server needs its extra dependencies: pip install 'nbupload[server]'"
        ) from None
    credentials = _load_credentials(args)
    if args.require_token and not credentials:
        raise CommandError(
            "--require-token needs the key pairs that sign the tokens: give --credentials-file"
        )
    if args.keyfile and not args.certfile:
        raise CommandError("--keyfile needs --certfile")
    for option, path in (("--certfile", args.certfile), ("--keyfile", args.keyfile)):
        if path and not os.path.isfile(path):
            raise CommandError(f"{option} {path}: no such file")
    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    root = Path(args.root) if args.root else _default_root()
    if args.workers > 1:
        return _serve_workers(args, root, credentials, ServerConfig, run_workers)
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    try:
        handle = start_server(
            root,
            args.host,
            args.port,
            max_file_size=args.max_file_size,
            max_request_size=args.max_request_size,
            credentials=credentials,
            deny_extensions=args.deny_extensions or (),
            partial_ttl=args.partial_ttl,
            throttle=args.throttle,
            body_timeout=args.body_timeout,
            require_token=args.require_token,
            certfile=args.certfile,
            keyfile=args.keyfile,
            log_level=args.log_level,
        )
    except RuntimeError as exc:
        raise CommandError(str(exc)) from None
    except ssl.SSLError as exc:
        raise CommandError(f"cannot use the TLS certificate {args.certfile}: {exc.reason or exc}") from None
    except OSError as exc:
        raise CommandError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from None
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"nbupload: serving on {handle.url} (root {handle.root})", flush=True)
        while not stop.is_set() and handle.running:
            stop.wait(0.5)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        handle.stop()
    return 0


def _serve_workers(
    args: argparse.Namespace, root: Path, credentials: dict[str, str], config_type: Any, run_workers: Any
) -> int:
    """``--workers N``: N processes on one port, sharing the root (see docs/server.md)."""
    try:
        config = config_type(
            root=root,
            max_file_size=args.max_file_size,
            max_request_size=args.max_request_size,
            credentials=credentials,
            deny_extensions=args.deny_extensions or (),
            partial_ttl=args.partial_ttl,
            throttle=args.throttle,
            body_timeout=args.body_timeout,
            require_token=args.require_token,
        )

        def ready(url: str) -> None:
            print(f"nbupload: serving on {url} (root {config.root}, {args.workers} workers)", flush=True)

        run_workers(
            config,
            args.host,
            args.port,
            args.workers,
            certfile=args.certfile,
            keyfile=args.keyfile,
            log_level=args.log_level,
            on_ready=ready,
        )
    except ssl.SSLError as exc:
        raise CommandError(f"cannot use the TLS certificate {args.certfile}: {exc.reason or exc}") from None
    except OSError as exc:
        raise CommandError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return 0


def _token(args: argparse.Namespace) -> int:
    from ..protocols.wcs import PutPolicy, make_token

    secret = args.sk if args.sk is not None else os.environ.get(SECRET_ENV)
    if not secret:
        raise CommandError(f"no secret key: give --sk or set {SECRET_ENV}")
    if args.deadline is not None:
        deadline = args.deadline
    else:
        deadline = int((time.time() + args.expires) * 1000)
    policy = PutPolicy(
        scope=args.scope,
        deadline=deadline,
        fsize_limit=args.fsize_limit or 0,
        return_body=args.return_body,
    )
    try:
        print(make_token(args.ak, secret, policy))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _etag(args: argparse.Namespace) -> int:
    from ..protocols.wcs import BLOCK_SIZE, EtagHasher

    status = 0
    for name in args.files:
        hasher = EtagHasher()
        try:
            with open(name, "rb") as f:
                while data := f.read(BLOCK_SIZE):
                    hasher.update(data)
        except OSError as exc:
            print(f"nbupload: {name}: {exc.strerror}", file=sys.stderr)
            status = 1
            continue
        print(f"{hasher.etag()}  {name}" if len(args.files) > 1 else hasher.etag())
    return status


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the reference upload server (uploader protocol and WCS append)",
        description="Run the reference upload server: POST /upload (DCloud uploader protocol) and "
        "POST /append/<position> (WCS append). Prints one line with its URL once it accepts connections.",
    )
    serve.add_argument("--root", help="directory receiving the files (default: the user data dir)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    serve.add_argument("--max-file-size", type=_size, metavar="SIZE", help="largest file accepted (4002)")
    serve.add_argument(
        "--max-request-size", type=_size, metavar="SIZE", help="largest request body accepted (4001)"
    )
    serve.add_argument(
        "--credentials",
        type=_credential,
        action="append",
        metavar="AK:SK",
        help="a WCS access key and its secret key (repeatable; prefer --credentials-file)",
    )
    serve.add_argument(
        "--credentials-file", metavar="FILE", help="file of AK:SK lines (keeps secrets off ps)"
    )
    serve.add_argument(
        "--deny-extensions",
        type=lambda s: [x for x in s.split(",") if x.strip()],
        metavar=".exe,.bat",
        help="refuse files with these extensions (4008)",
    )
    serve.add_argument(
        "--partial-ttl",
        type=parse_duration,
        default=86400.0,
        metavar="DURATION",
        help="drop partial uploads untouched this long (default 24h)",
    )
    serve.add_argument(
        "--body-timeout",
        type=parse_duration,
        default=60.0,
        metavar="DURATION",
        help="give up a request body that sends nothing this long (default 60s)",
    )
    serve.add_argument(
        "--throttle", type=_rate, metavar="RATE", help="read request bodies at most this fast, e.g. 1MiB"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve with N processes on one port, sharing the root (default 1)",
    )
    serve.add_argument("--certfile", metavar="PEM", help="serve HTTPS with this certificate (chain)")
    serve.add_argument(
        "--keyfile", metavar="PEM", help="the certificate's private key (if not in --certfile)"
    )
    serve.add_argument(
        "--require-token",
        action="store_true",
        help="refuse /upload requests without a valid upload token signed with --credentials",
    )
    serve.add_argument(
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.set_defaults(func=_serve)

    token = subparsers.add_parser(
        "token", help="print a WCS upload token", description="Print a WCS upload token."
    )
    token.add_argument("--ak", required=True, help="access key")
    token.add_argument("--sk", help=f"secret key (default: ${SECRET_ENV})")
    token.add_argument("--scope", required=True, help="bucket or bucket:key")
    when = token.add_mutually_exclusive_group()
    when.add_argument(
        "--expires", type=float, default=3600.0, metavar="SECONDS", help="valid for (default 3600)"
    )
    when.add_argument(
        "--deadline", type=int, metavar="MS", help="absolute deadline, Unix time in milliseconds"
    )
    token.add_argument("--fsize-limit", type=_size, metavar="SIZE", help="largest object size allowed")
    token.add_argument(
        "--return-body", metavar="TPL", help="returnBody template, e.g. 'key=$(key)&fsize=$(fsize)'"
    )
    token.set_defaults(func=_token)

    etag = subparsers.add_parser(
        "etag", help="print files' WCS etags", description="Print each file's WCS etag."
    )
    etag.add_argument("files", nargs="+", metavar="FILE")
    etag.set_defaults(func=_etag)
