"""Argument parsing for ``%upload``: argparse that reports a short usage error, never exits.

The put options are declared once in :mod:`nbupload.options`, shared with the command line
(``nbupload put``), so ``%upload FILE [URL] [options]`` and the CLI accept the same options.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any, NoReturn

from IPython.core.error import UsageError

__all__ = ["HelpShown", "MagicParser", "add_put_arguments", "parse_fields", "put_options"]


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
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"invalid field {item!r}: expected name=value")
        out[name.strip()] = value
    return out


class _OptionsOnly:
    """Lets the CLI's ``add_put_arguments`` add its options to the magic's parser, minus what
    the magic does its own way: the positionals (FILE and URL are optional here, URL has a
    default), engine-wide settings (``%config Uploader``, ``Uploader.verify`` for HTTPS)
    and ``--quiet`` (the magic has one).
    """

    _SKIP = frozenset({"--retries", "--timeout", "--quiet", "--cacert", "--insecure"})

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def add_argument(self, *names: str, **kwargs: Any) -> Any:
        if not names or not names[0].startswith("-") or self._SKIP.intersection(names):
            return None
        if "--protocol" in names:
            kwargs["default"] = None  # Uploader.protocol decides
            kwargs.setdefault("help", "wire protocol (default: Uploader.protocol)")
        return self.parser.add_argument(*names, **kwargs)


def add_put_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``nbupload put`` (:mod:`nbupload.options`), so both accept the same."""
    from ..options import add_put_arguments as shared_put_arguments

    shared_put_arguments(_OptionsOnly(parser), source=False)  # type: ignore[arg-type]


def put_options(args: argparse.Namespace, default_protocol: str = "uploader") -> dict[str, Any]:
    """``engine.submit`` keywords from parsed put arguments (``None`` values left out)."""
    from ..options import OptionError
    from ..options import put_options as shared_put_options

    args.protocol = args.protocol or default_protocol
    try:
        options = shared_put_options(args)
    except OptionError as exc:
        raise UsageError(str(exc)) from None
    return {k: v for k, v in options.items() if v is not None}
