"""``PATH...`` (files, folders, globs) expanded into the files of a batch and their names.

Pure local file-system work, no network: the batch front end (:mod:`nbupload.batch`), the
CLI and the magic all expand arguments the same way.

Rules (documented in docs/batches.md):

- A file is named by its base name: ``data/a.csv`` -> ``a.csv``.
- A folder is walked recursively and its files are named relative to it, as
  ``rclone copy DIR`` does: ``results/`` holding ``run1/metrics.csv`` -> ``run1/metrics.csv``.
- A glob (``*``, ``?``, ``[...]``, ``**`` for any depth; quoted or expanded by the shell,
  either way) is matched from its fixed leading folder and every match is named relative to
  that folder: ``results/*/metrics.csv`` -> ``run1/metrics.csv``, ``run2/metrics.csv``. A
  matched folder is walked as above. A path that exists as written is never taken as a glob.
- Hidden files and folders (a name starting with ``.``) found by walking or globbing are left
  out unless ``hidden=True``; a hidden path named explicitly is kept.
- Symlinks to files are followed (their content is sent); symlinks to folders are not
  walked into (no loops, nothing outside the tree by surprise).
- The same file reached twice is sent once; two different files that would get the same
  name are an error (``NameClashError``), never a silent overwrite on the server.

Paths and the URL in one argument list (``PATH... [URL]``, the CLI and ``%upload``):
:func:`split_url` tells them apart by one rule, so both front ends read a line alike: a word
is the URL when it starts with ``http://`` or ``https://`` (any case) and no file or folder
of that name exists; only the last word may be the URL.
"""

from __future__ import annotations

import glob
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["BatchItem", "NameClashError", "expand_paths", "has_magic", "looks_like_url", "split_url"]


class NameClashError(ValueError):
    """Two different files would be stored under one name."""


@dataclass(frozen=True)
class BatchItem:
    """One file of a batch: its local ``path``, its ``name`` (``/``-separated, relative)
    and the ``size`` and ``mtime_ns`` seen when the batch was made."""

    path: str
    name: str
    size: int
    mtime_ns: int


def has_magic(text: str) -> bool:
    return glob.has_magic(text)


_URL = re.compile(r"^https?://", re.IGNORECASE)


def looks_like_url(text: str) -> bool:
    """Whether an argument is an upload URL rather than a path (see the module)."""
    return bool(_URL.match(text)) and not os.path.lexists(text)


def split_url(words: Sequence[str]) -> tuple[list[str], str | None]:
    """``["a.csv", "results/", "http://h/upload"]`` -> ``(["a.csv", "results/"], "http://h/upload")``.

    The URL is ``None`` when the last word is not one (the front end then uses its default
    URL or says one is missing). A URL anywhere else is an error: ``ValueError`` saying so.
    """
    paths = list(words)
    url = paths.pop() if paths and looks_like_url(paths[-1]) else None
    for word in paths:
        if looks_like_url(word):
            raise ValueError(f"the URL goes last, after the paths: {word}")
    return paths, url


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def _fixed_base(pattern: str) -> str:
    """The leading folders of a glob that hold no wildcard (``.`` when none)."""
    parts = pattern.split(os.sep)
    fixed: list[str] = []
    for part in parts[:-1]:
        if has_magic(part):
            break
        fixed.append(part)
    if not fixed:
        return "."
    base = os.sep.join(fixed)
    return base or os.sep


def _rel(path: str, base: str) -> str:
    return os.path.relpath(path, base).replace(os.sep, "/")


def _item(path: str, name: str) -> BatchItem | None:
    try:
        st = os.stat(path)  # follows a symlink to a file
    except OSError:
        return None  # vanished, or a broken symlink
    if not stat.S_ISREG(st.st_mode):
        return None
    return BatchItem(os.path.abspath(path), name, st.st_size, st.st_mtime_ns)


def _walk(folder: str, base: str, hidden: bool) -> Iterable[BatchItem]:
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        if not hidden:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for fname in sorted(filenames):
            if not hidden and fname.startswith("."):
                continue
            path = os.path.join(dirpath, fname)
            item = _item(path, _rel(path, base))
            if item is not None:
                yield item


def expand_paths(paths: Iterable[str | os.PathLike[str]], *, hidden: bool = False) -> list[BatchItem]:
    """The files ``paths`` name, in order, each with its relative name (see the module).

    ``FileNotFoundError`` for a path that neither exists nor matches anything;
    :class:`NameClashError` when two files would get one name.
    """
    items: list[BatchItem] = []
    for raw in paths:
        text = os.fspath(raw)
        if not text:
            raise FileNotFoundError("an empty path")
        text = os.path.expanduser(text)
        if os.path.lexists(text) or not has_magic(text):
            if os.path.isdir(text):
                items.extend(_walk(text, text, hidden))
                continue
            item = _item(text, os.path.basename(os.path.normpath(text)))
            if item is None:
                what = "not a regular file" if os.path.lexists(text) else "no such file or folder"
                raise FileNotFoundError(f"{what}: {text}")
            items.append(item)
            continue
        base = _fixed_base(text)
        matches = sorted(glob.glob(text, recursive=True))
        found = 0
        for match in matches:
            rel = _rel(match, base)
            if not hidden and _hidden(rel):
                continue
            if os.path.isdir(match):
                if os.path.islink(match):
                    continue
                for item in _walk(match, base, hidden):
                    items.append(item)
                    found += 1
                continue
            item = _item(match, rel)
            if item is not None:
                items.append(item)
                found += 1
        if not found:
            raise FileNotFoundError(f"no file matches {text}")
    return _dedupe(items)


def _dedupe(items: list[BatchItem]) -> list[BatchItem]:
    by_name: dict[str, BatchItem] = {}
    out: list[BatchItem] = []
    for item in items:
        real = os.path.realpath(item.path)
        other = by_name.get(item.name)
        if other is not None:
            if os.path.realpath(other.path) == real:
                continue
            raise NameClashError(
                f"two files would be stored as {item.name!r}: {other.path} and {item.path}; "
                "upload their common folder instead, or in two batches with different prefixes"
            )
        by_name[item.name] = item
        out.append(item)
    return out
