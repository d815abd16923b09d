"""Argument parsing for ``%upload``: argparse that reports a short usage error, never exits.

The put options come from the CLI (``nbupload put``) when its reusable builder exists, so
``%upload FILE URL [options]`` and the command line accept the same options.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any, NoReturn

from IPython.core.error import UsageError

__all__ = ["MagicParser", "add_put_arguments", "parse_fields", "put_options"]


class HelpShown(Exception):
    """``-h``/``--help`` was given: the help text is in ``args[0]``."""


class MagicParser(argparse.ArgumentParser):
    """An ArgumentParser for a magic: errors raise :class:`UsageError` (shown in one line)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}\n{self.format_usage().strip()}  (see %upload?)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            raise UsageError(message.strip())
        raise HelpShown(self.format_help())

    def print_help(self, file: Any = None) -> None:
        raise HelpShown(self.format_help())


def parse_fields(items: Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=two"]`` -> ``{"a": "1", "b": "two"}``; blank lines ignored."""
    out: dict[str, str] = {}
    for item in items:
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"invalid field {item!r}: expected name=value")
        out[name.strip()] = value
    return out


def _size(text: str) -> int:
    from ..units import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_put_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``put`` options (the same names as ``nbupload put``)."""
    parser.add_argument("-p", "--protocol", choices=("uploader", "plain", "wcs-append"),
                        help="wire protocol (default: Uploader.protocol)")
    parser.add_argument("--chunk-size", type=_size, metavar="SIZE", help="bytes per chunk, e.g. 4MiB")
    parser.add_argument("--name", metavar="FIELD", help="form field name of the file (uploader)")
    parser.add_argument("--filename", metavar="NAME", help="file name sent to the server")
    parser.add_argument("-F", "--field", action="append", default=[], metavar="NAME=VALUE",
                        help="a form field sent with every chunk (repeatable)")
    parser.add_argument("-H", "--header", action="append", default=[], metavar="NAME:VALUE",
                        help="an extra HTTP header (repeatable)")
    parser.add_argument("--key", help="WCS object key")
    parser.add_argument("--token", help="WCS upload token (else made from the access/secret key)")
    parser.add_argument("--access-key", metavar="AK", help="WCS access key")
    parser.add_argument("--secret-key", metavar="SK", help="WCS secret key (never shown)")
    parser.add_argument("--scope", help="WCS scope: bucket or bucket:key")
    parser.add_argument("--mime", help="content type of the file")


def put_options(args: argparse.Namespace) -> dict[str, Any]:
    """``engine.submit`` keywords from parsed put arguments (``None`` values left out)."""
    try:
        fields = parse_fields(args.field)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    headers: dict[str, str] = {}
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"invalid header {item!r}: expected Name: value")
        headers[name.strip()] = value.strip()
    options = {
        "protocol": args.protocol,
        "chunk_size": args.chunk_size,
        "name": args.name,
        "filename": args.filename,
        "fields": fields or None,
        "headers": headers or None,
        "key": args.key,
        "token": args.token,
        "access_key": args.access_key,
        "secret_key": args.secret_key,
        "scope": args.scope,
        "mime": args.mime,
    }
    return {k: v for k, v in options.items() if v is not None}
