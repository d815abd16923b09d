"""Turning names from the wire into paths under the server root, safely.

Two kinds of names arrive: an uploader ``filename`` (stored as ``ROOT/<name>``; a clean
relative path such as ``run1/metrics.csv`` keeps its folders, PROTOCOLS.md A8) and a WCS ``bucket``/``key`` (``ROOT/<bucket>/<key>``, where the key may
hold ``/``-separated directories). A filename is *rewritten* into something harmless, as
browsers' own downloads do; a key is *refused* when unsafe, because rewriting could map two
different keys to one object.

Nothing is percent-decoded here beyond the HTML5 form escapes the multipart layer undoes:
a literal ``..%2F`` is just characters in one path component, never a separator. The
directory walk opens every component with ``O_NOFOLLOW`` relative to the parent's file
descriptor, so a symlink planted under the root is never followed.
"""

from __future__ import annotations

import errno
import os
import re
import unicodedata
from collections.abc import Iterable

__all__ = [
    "MAX_COMPONENT_BYTES",
    "UnsafeNameError",
    "check_components",
    "has_denied_extension",
    "normalize_extensions",
    "open_dir_chain",
    "replace_into",
    "sanitize_filename",
    "sanitize_relpath",
    "split_key",
]

#: Folders an uploader filename may keep (deeper names are reduced to their last component).
MAX_DEPTH = 32

MAX_COMPONENT_BYTES = 255
_RESERVED = frozenset(
    ["con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))]
)
_SEPARATORS = re.compile(r"[/\\]")


class UnsafeNameError(ValueError):
    """A key or path that cannot be stored safely; the message says why."""


def _bad_char(ch: str) -> bool:
    # Cc: C0/C1 controls and NUL. Cf: invisible format characters such as U+202E (right-to-left
    # override, used to disguise "evil\u202Etxt.exe"). Zl/Zp: line/paragraph separators.
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def _truncate_utf8(name: str, limit: int) -> str:
    data = name.encode("utf-8")
    if len(data) <= limit:
        return name
    stem, ext = os.path.splitext(name)
    ext_bytes = ext.encode("utf-8")
    if not ext or len(ext_bytes) > 32:
        stem, ext_bytes = name, b""
    room = limit - len(ext_bytes)
    cut = stem.encode("utf-8")[:room].decode("utf-8", "ignore")
    return cut + ext_bytes.decode("utf-8")


def sanitize_filename(name: str | None, default: str = "upload") -> str:
    """A client's filename as one safe path component (never empty, ``.``-free start).

    Keeps the last non-empty ``/`` or ``\\`` separated component (browsers on Windows send
    whole paths; ``weird\\`` is ``weird``), replaces control and invisible characters by
    ``_``, strips leading and trailing dots and spaces, prefixes Windows reserved names with
    ``_`` and cuts to 255 UTF-8 bytes keeping the extension.
    """
    text = unicodedata.normalize("NFC", name or "")
    text = next((c for c in reversed(_SEPARATORS.split(text)) if c.strip(" .")), "")
    text = "".join("_" if _bad_char(ch) else ch for ch in text)
    text = text.strip(" .")
    if not text:
        text = default
    if text.split(".")[0].strip().lower() in _RESERVED:
        text = "_" + text
    text = _truncate_utf8(text, MAX_COMPONENT_BYTES)
    assert "/" not in text and "\x00" not in text and not text.startswith(".")
    return text


def sanitize_relpath(name: str | None, default: str = "upload") -> str:
    """A client's filename as a safe ``/``-separated path under the root (PROTOCOLS.md A8).

    A *clean* relative path keeps its folders: every component is one that
    :func:`sanitize_filename` leaves unchanged (so no ``.``/``..``/empty component, no
    leading dot, no backslash, control character or reserved name), at most
    :data:`MAX_DEPTH` deep. Anything else (a ``..`` component, an absolute, drive or
    backslash path, a NUL, a hidden folder) is reduced to its sanitized last component, as
    before A8: the upload succeeds under a harmless name, never outside the root.
    """
    text = unicodedata.normalize("NFC", name or "")
    comps = text.split("/")
    clean = 1 < len(comps) <= MAX_DEPTH and "\\" not in text
    if clean and all(comp and sanitize_filename(comp, "") == comp for comp in comps):
        return "/".join(comps)
    return sanitize_filename(text, default)


def replace_into(root_fd: int, src: str | os.PathLike[str], relname: str) -> None:
    """``os.replace(src, ROOT/relname)``, creating the folders of a relative name (never
    through a symlink). A folder that is a symlink or a file is ``NotADirectoryError``."""
    comps = relname.split("/")
    try:
        dir_fd = open_dir_chain(root_fd, comps[:-1], create=True)
    except UnsafeNameError as exc:
        raise NotADirectoryError(errno.ENOTDIR, str(exc)) from None
    try:
        os.replace(src, comps[-1], dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def normalize_extensions(extensions: Iterable[str] | str) -> tuple[str, ...]:
    """``"exe, .BAT"`` -> ``(".exe", ".bat")``."""
    if isinstance(extensions, str):
        extensions = extensions.split(",")
    out = []
    for ext in extensions:
        ext = ext.strip().lower()
        if ext:
            out.append(ext if ext.startswith(".") else "." + ext)
    return tuple(dict.fromkeys(out))


def has_denied_extension(filename: str, denied: Iterable[str]) -> bool:
    """Whether the (sanitized) filename ends with one of the denied extensions."""
    lower = filename.lower()
    return any(lower.endswith(ext) for ext in denied)


def _check_component(comp: str, what: str, *, top: bool) -> None:
    if comp in ("", ".", ".."):
        raise UnsafeNameError(f"{what} has an empty, '.' or '..' path component")
    if top and comp.startswith("."):
        raise UnsafeNameError(f"{what} must not start with '.'")
    if "\\" in comp:
        raise UnsafeNameError(f"{what} must not contain a backslash")
    if any(_bad_char(ch) for ch in comp):
        raise UnsafeNameError(f"{what} must not contain control or invisible characters")
    if len(comp.encode("utf-8")) > MAX_COMPONENT_BYTES:
        raise UnsafeNameError(f"{what} has a path component longer than {MAX_COMPONENT_BYTES} bytes")
    if comp.split(".")[0].strip().lower() in _RESERVED:
        raise UnsafeNameError(f"{what} uses a reserved name ({comp!r})")


def check_components(comps: list[str], what: str) -> None:
    """:class:`UnsafeNameError` unless ``comps`` is a safe path under the root, checked as a
    WCS bucket (the first) and key (the rest) are."""
    if not comps:
        raise UnsafeNameError(f"{what} is empty")
    for i, comp in enumerate(comps):
        _check_component(comp, what, top=i == 0)


def split_key(bucket: str, key: str) -> list[str]:
    """``ROOT``-relative path components of WCS object ``bucket/key``, or :class:`UnsafeNameError`."""
    if "/" in bucket:
        raise UnsafeNameError("bucket must not contain '/'")
    _check_component(bucket, "bucket", top=True)
    if key.startswith("/"):
        raise UnsafeNameError("key must not be an absolute path")
    comps = key.split("/")
    for comp in comps:
        _check_component(comp, "key", top=False)
    return [bucket, *comps]


def open_dir_chain(root_fd: int, comps: Iterable[str], *, create: bool) -> int:
    """Open (optionally creating) ``ROOT/comp1/comp2/...`` as a directory fd, never following
    a symlink. The caller closes the returned fd. Raises :class:`UnsafeNameError` when a
    component is a symlink or not a directory, ``FileNotFoundError`` when missing."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.dup(root_fd)
    try:
        for comp in comps:
            try:
                nfd = os.open(comp, flags, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(comp, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                nfd = os.open(comp, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeNameError(
                        f"path component {comp!r} is a symlink or not a directory"
                    ) from None
                raise
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd
