"""The ``nbupload`` command line: one argparse parser, sub-commands registered by module.

- :mod:`.upload`: ``put``, ``resume``, ``ls`` (the engine's front end)
- :mod:`.server`: ``serve``, ``token``, ``etag`` (the reference server and WCS helpers)
- :mod:`.demo`: ``demo`` (the README's demo command)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .._version import __version__

__all__ = ["build_parser", "main"]

_COMMAND_MODULES = ("upload", "server", "demo")


class CommandError(Exception):
    """A user-facing failure: printed as ``nbupload: <message>``, exit status ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbupload",
        description="Resumable uploads (DCloud uploader protocol, WCS append) and their reference server.",
    )
    parser.add_argument("--version", action="version", version=f"nbupload {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:  # a command module not written yet
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"nbupload: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("nbupload: interrupted", file=sys.stderr)
        return 130
