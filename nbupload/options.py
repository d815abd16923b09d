"""The upload options, declared once for the command line (``nbupload put``) and ``%upload``.

Both front ends build their parsers with :func:`add_put_arguments` and turn the parsed
namespace into ``Engine.submit`` keywords with :func:`put_options`, so an option added here
(one ``parser.add_argument`` line, plus its keyword in :func:`put_options`) exists in both.
Neither front end is imported here.
"""

from __future__ import annotations

import argparse
from typing import Any

from .protocols import PROTOCOLS
from .units import parse_size

__all__ = [
    "OptionError",
    "add_max_rate_argument",
    "add_put_arguments",
    "parse_field",
    "parse_file_field",
    "parse_header",
    "parse_rate",
    "put_options",
    "session_files",
    "split_put_targets",
]


class OptionError(ValueError):
    """Options that do not go together; the message says which."""


def parse_field(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"invalid field {text!r}: expected NAME=VALUE")
    return name.strip(), value


def parse_file_field(text: str) -> tuple[str, str]:
    """``--file FIELD=PATH``: one file of a multi-file session, under form field FIELD."""
    from .protocols.errors import ProtocolError
    from .protocols.uploader import check_field_name

    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"invalid --file {text!r}: expected FIELD=PATH, e.g. photo=a.jpg")
    try:
        check_field_name(name)
    except ProtocolError as exc:
        raise argparse.ArgumentTypeError(f"--file {text!r}: {exc}") from None
    return name, path


def session_files(args: argparse.Namespace) -> dict[str, str] | None:
    """The ``--file FIELD=PATH`` files as ``{field: path}`` (``None`` without ``--file``).

    The engine's rules (unique, usable field names) raise
    :class:`~nbupload.errors.FileFieldError`; a repeated field is an error, not "last wins".
    """
    pairs = getattr(args, "files", None) or []
    if not pairs:
        return None
    from .engine.multifile import check_session_items

    return dict(check_session_items(pairs))


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c in name for c in " \t\r\n"):
        # the text is not echoed: a header given without its ':' may still hold a secret
        raise argparse.ArgumentTypeError("invalid header: expected 'Name: value' (a name, a colon, a value)")
    return name.strip(), value.strip()


def _size(text: str) -> int:
    try:
        n = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if n <= 0:
        raise argparse.ArgumentTypeError("chunk size must be positive")
    return n


def streams_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError("streams must be between 1 and 64")
    return n


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return v


def parse_rate(text: str) -> int:
    """A rate in bytes per second: ``10MB``, ``10MiB/s``, ``500k`` (the units of a size)."""
    body = text.strip()
    if body.lower().endswith("/s"):
        body = body[:-2]
    try:
        n = parse_size(body)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: {exc}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: must be positive")
    return n


def add_max_rate_argument(parser: argparse.ArgumentParser) -> None:
    """``--max-rate``: the engine-wide cap, shared by every task and stream of the process."""
    parser.add_argument(
        "--max-rate",
        type=parse_rate,
        metavar="RATE",
        help="cap the total upload rate of all files and streams, bytes/s, e.g. 10MB or 8MiB/s",
    )


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retries", type=int, metavar="N", help="tries without progress before giving up (default 8)"
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        metavar="S",
        help="network timeout per phase (connect, send, answer) and stall limit, seconds",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.add_argument(
        "--cacert", metavar="PEM", help="HTTPS: trust the certificates signed by this CA bundle"
    )
    parser.add_argument(
        "--insecure", "-k", action="store_true", help="HTTPS: do not verify the server's certificate"
    )


def _add_credentials(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token",
        help="WCS upload token (or NBUPLOAD_TOKEN); for the uploader protocol it is "
        "sent as 'Authorization: UpToken <token>'",
    )
    parser.add_argument(
        "--ak", dest="access_key", metavar="AK", help="WCS access key (or NBUPLOAD_ACCESS_KEY)"
    )
    parser.add_argument(
        "--sk", dest="secret_key", metavar="SK", help="WCS secret key (or NBUPLOAD_SECRET_KEY)"
    )


def add_put_arguments(parser: argparse.ArgumentParser, *, source: bool = True) -> None:
    """The ``put`` options (FILE URL and the rest), for ``nbupload put`` and ``%upload``."""
    if source:
        parser.add_argument(
            "file",
            metavar="PATH",
            nargs="+",
            help="file(s) to upload; folders (recursive) and globs make a batch "
            "(none with --file FIELD=PATH)",
        )
    url = parser.add_argument("url", metavar="URL", help="upload URL (for wcs-append: the upload domain)")
    if url is not None:
        # `put --file F=P URL`: argparse hands the one positional to PATH; URL is then taken
        # back from there (split_put_targets). Not required here so argparse lets it through;
        # how it matches (PATH... URL, options anywhere) is unchanged.
        url.required = False
    parser.add_argument("--protocol", "-p", choices=PROTOCOLS, default="uploader")
    # batches (several paths, folders, globs): nbupload put and %upload alike
    parser.add_argument(
        "--prefix", metavar="FOLDER", help="batch: a folder (uploader) or key prefix (WCS) for every name"
    )
    parser.add_argument("--hidden", action="store_true", help="batch: include dot files and folders")
    parser.add_argument("--no-skip", action="store_true", help="batch: send files again even if unchanged")
    parser.add_argument(
        "--chunk-size",
        type=_size,
        metavar="SIZE",
        help="bytes per request to start with, e.g. 4MiB (default); it adapts to the link",
    )
    parser.add_argument(
        "--streams",
        type=streams_arg,
        metavar="N",
        help="chunks of the file in flight at once, each on its own connection (default 4)",
    )
    parser.add_argument(
        "--chunk-max",
        type=_size,
        metavar="SIZE",
        help="the largest a chunk grows to (default 64MiB); equal to --chunk-size: fixed chunks",
    )
    parser.add_argument(
        "--limit-rate",
        type=parse_rate,
        metavar="RATE",
        help="cap this upload's rate (all its streams), bytes/s, e.g. 10MB or 8MiB/s",
    )
    parser.add_argument(
        "--name", default="file", metavar="FIELD", help="form field of the file (default: file)"
    )
    parser.add_argument("--filename", metavar="NAME", help="file name sent to the server")
    parser.add_argument(
        "--file",
        dest="files",
        action="append",
        type=parse_file_field,
        default=[],
        metavar="FIELD=PATH",
        help="uploader: one file of a multi-file session, in form field FIELD (repeatable; "
        "instead of PATH: every file goes in one session, resumed as a whole)",
    )
    parser.add_argument(
        "--field",
        action="append",
        type=parse_field,
        default=[],
        metavar="K=V",
        help="extra form field (repeatable; x:NAME variables for WCS)",
    )
    parser.add_argument(
        "--header",
        action="append",
        type=parse_header,
        default=[],
        metavar="'K: V'",
        help="extra HTTP header (repeatable)",
    )
    _add_credentials(parser)
    parser.add_argument("--scope", help="WCS scope, bucket or bucket:key (with --ak/--sk)")
    parser.add_argument("--key", help="WCS object key")
    parser.add_argument("--mime", metavar="TYPE", help="content type of the file")
    _add_common(parser)


def split_put_targets(args: argparse.Namespace) -> tuple[list[str], str]:
    """The PATHs and the URL of ``put`` (see :func:`add_put_arguments`); :class:`OptionError`
    when the URL is missing or PATHs come with ``--file``."""
    paths = list(getattr(args, "file", None) or [])
    url = args.url
    files = getattr(args, "files", None)
    if url is None and files and len(paths) == 1:
        url = paths.pop()
    if url is None:
        raise OptionError("give PATH... and URL, or --file FIELD=PATH ... and URL")
    if files and paths:
        raise OptionError("give the files either as PATH... or as --file FIELD=PATH, not both")
    return paths, url


def put_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for ``Engine.submit`` / ``nbupload.upload`` from parsed put options."""
    if args.token and (args.access_key or args.secret_key):
        raise OptionError("give either --token or --ak/--sk/--scope, not both")
    if args.protocol != "wcs-append" and (args.access_key or args.secret_key or args.scope or args.key):
        raise OptionError("--ak, --sk, --scope and --key are for --protocol wcs-append")
    if getattr(args, "files", None):
        if args.protocol == "wcs-append":
            raise OptionError(
                "--file FIELD=PATH makes one uploader session of several files; wcs-append uploads "
                "one object per task (give the files as PATH... for a batch)"
            )
        if args.filename or args.name != "file":
            raise OptionError(
                "--file FIELD=PATH names each file's field: --name and --filename do not go with it"
            )
    headers = dict(args.header)
    token = args.token
    if args.protocol != "wcs-append" and token:
        # the uploader route takes the upload token as a header (PROTOCOLS.md A9); a secret
        # header, so the journal never keeps it
        headers["Authorization"] = f"UpToken {token}"
        token = None
    opts: dict[str, Any] = {
        "protocol": args.protocol,
        "name": args.name,
        "filename": args.filename,
        "fields": dict(args.field) or None,
        "headers": headers or None,
        "key": args.key,
        "token": token,
        "access_key": args.access_key,
        "secret_key": args.secret_key,
        "scope": args.scope,
        "mime": args.mime,
    }
    if args.chunk_size:
        opts["chunk_size"] = args.chunk_size
    if getattr(args, "streams", None):
        opts["streams"] = args.streams
    if getattr(args, "chunk_max", None):
        opts["chunk_max"] = args.chunk_max
    if getattr(args, "limit_rate", None):
        opts["limit_rate"] = args.limit_rate
    return opts
