"""Multi-file uploader sessions (PROTOCOLS.md A7): the rules, and the files as one source.

A session holds several file fields under one boundary. The engine runs it as one task
whose bytes are the files laid end to end in the order given: its acknowledged ranges,
progress, journal and controls (pause, cancel, retry) are those of one task, and the
driver maps each range back to its field (:class:`FieldLayout`) so that every chunk
carries exactly one field's range. The rules every front end gets from here: field names
are unique and usable (:func:`~nbupload.protocols.uploader.check_field_name`), every file
exists, and options that name one file (``filename``, ``key``, ``position``, ``name``) or
another protocol (``wcs-append``) do not go with several.
"""

from __future__ import annotations

import bisect
import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import FileFieldError, SourceChangedError
from ..protocols.errors import ProtocolError
from ..protocols.ranges import RangeSet
from ..protocols.uploader import check_field_name
from .sources import OpenedSource, open_source, reopen_path
from .spec import SessionFile

__all__ = [
    "ConcatSource",
    "FieldLayout",
    "OpenedSession",
    "check_session_items",
    "open_session",
    "reopen_session",
    "session_label",
]


def check_session_items(items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """``(field, source)`` pairs of a session, checked: at least one, names usable and unique.

    A mapping cannot repeat a name; pairs (the command line's repeated ``--file``) can,
    and a repeated name is an error, never a silent "last one wins".
    """
    pairs = list(items.items()) if isinstance(items, Mapping) else [tuple(p) for p in items]
    if not pairs:
        raise FileFieldError("a multi-file session needs at least one FIELD=PATH")
    seen: set[str] = set()
    out: list[tuple[str, Any]] = []
    for pair in pairs:
        if len(pair) != 2:
            raise FileFieldError(f"expected (field, file) pairs, got {pair!r}")
        name, source = pair
        try:
            check_field_name(name)
        except ProtocolError as exc:
            raise FileFieldError(str(exc)) from None
        if name in seen:
            raise FileFieldError(f"field {name!r} is given twice: each file needs its own field name")
        seen.add(name)
        out.append((name, source))
    return out


def session_label(files: Iterable[SessionFile]) -> str:
    """What the user recognises a session by: its file names (``a.jpg, b.pdf (+3)``)."""
    names = [f.filename for f in files]
    shown = ", ".join(names[:3])
    return f"{shown} (+{len(names) - 3})" if len(names) > 3 else shown


class ConcatSource:
    """Several sources read as one, end to end (the task's byte space).

    :meth:`part_at` hands out a part itself, so that a sender reads a field from the file
    that holds it (a :class:`~nbupload.protocols.multipart.FileSource` goes out with
    ``sendfile``) rather than through :meth:`pread` here, which copies.
    """

    def __init__(self, parts: list[Any]) -> None:
        self._parts = parts
        self._starts: list[int] = []
        pos = 0
        for p in parts:
            self._starts.append(pos)
            pos += int(p.size)
        self.size = pos

    def part_at(self, index: int, offset: int, size: int) -> Any | None:
        """Part ``index`` when it holds exactly ``[offset, offset + size)`` of the whole (its
        own offsets then start at 0 there), else ``None``."""
        if 0 <= index < len(self._parts) and self._starts[index] == offset:
            part = self._parts[index]
            if int(part.size) == size:
                return part
        return None

    def pread(self, size: int, offset: int) -> bytes:
        out = bytearray()
        i = max(0, bisect.bisect_right(self._starts, offset) - 1)
        while size > 0 and i < len(self._parts):
            part, start = self._parts[i], self._starts[i]
            inner = offset - start
            if 0 <= inner < part.size:
                data = part.pread(min(size, part.size - inner), inner)
                if not data:
                    break
                out += data
                offset += len(data)
                size -= len(data)
                if inner + len(data) < part.size:
                    continue  # a short read: read on from where it stopped
            i += 1
        return bytes(out)


@dataclass
class OpenedSession(OpenedSource):
    """The opened files of a session, as one :class:`OpenedSource` (``source`` reads them end
    to end); ``parts`` are the files, in field order."""

    parts: list[OpenedSource] = field(default_factory=list)
    files: tuple[SessionFile, ...] = ()

    @property
    def persistent(self) -> bool:
        return bool(self.parts) and all(p.persistent for p in self.parts)

    def check_unchanged(self) -> None:
        for part in self.parts:
            part.check_unchanged()

    def close(self) -> None:
        for part in self.parts:
            part.close()


def _opened_session(parts: list[OpenedSource], files: tuple[SessionFile, ...]) -> OpenedSession:
    src = ConcatSource([p.source for p in parts])
    return OpenedSession(src, src.size, session_label(files), parts=parts, files=files)


def open_session(
    items: Mapping[str, Any] | Iterable[tuple[str, Any]], mime: str | None = None
) -> OpenedSession:
    """Open every file of a session (see :func:`check_session_items`); :class:`FileFieldError`
    names the field whose file is missing or unreadable."""
    pairs = check_session_items(items)
    parts: list[OpenedSource] = []
    files: list[SessionFile] = []
    try:
        for name, given in pairs:
            source = os.path.expanduser(os.fspath(given)) if isinstance(given, (str, os.PathLike)) else given
            try:
                opened = open_source(source)
            except (OSError, ValueError, TypeError) as exc:
                raise FileFieldError(f"field {name!r}: {exc}") from None
            parts.append(opened)
            files.append(
                SessionFile(
                    name=name,
                    filename=opened.filename,
                    size=opened.size,
                    path=opened.path if opened.persistent else None,
                    identity=opened.identity if opened.persistent else None,
                    mime=mime,
                )
            )
    except BaseException:
        for p in parts:
            p.close()
        raise
    return _opened_session(parts, tuple(files))


def reopen_session(files: tuple[SessionFile, ...]) -> OpenedSession:
    """Open a journaled session's files again, each checked unchanged (:class:`SourceChangedError`)."""
    parts: list[OpenedSource] = []
    try:
        for f in files:
            if f.path is None:
                raise SourceChangedError(
                    f"field {f.name!r}: its in-memory source is gone (it lived in another process)"
                )
            parts.append(reopen_path(f.path, f.identity))
    except BaseException:
        for p in parts:
            with contextlib.suppress(OSError):
                p.close()
        raise
    return _opened_session(parts, files)


@dataclass(frozen=True)
class FieldLayout:
    """Where each field of a session lies in the task's byte space.

    Field ``i`` holds ``[base[i], base[i] + size[i])``. A single-file task is a layout of one
    field at 0, so the driver has one code path.
    """

    files: tuple[SessionFile, ...]
    bases: tuple[int, ...]

    @classmethod
    def of(cls, files: Iterable[SessionFile]) -> FieldLayout:
        fs = tuple(files)
        bases, pos = [], 0
        for f in fs:
            bases.append(pos)
            pos += f.size
        return cls(fs, tuple(bases))

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)

    def to_task(self, i: int, ranges: RangeSet) -> RangeSet:
        """Field ``i``'s own ranges as ranges of the task."""
        b = self.bases[i]
        return RangeSet((b + s, b + e) for s, e in ranges.clip(self.files[i].size).spans)

    def of_field(self, i: int, ranges: RangeSet) -> RangeSet:
        """The part of the task's ``ranges`` that is field ``i``, in the field's own offsets."""
        b, n = self.bases[i], self.files[i].size
        return RangeSet((max(s, b) - b, min(e, b + n) - b) for s, e in ranges.spans if s < b + n and e > b)

    def held(self, by_name: Mapping[str, RangeSet]) -> RangeSet:
        """The task's ranges from what a query answer says each field holds."""
        out = RangeSet()
        for i, f in enumerate(self.files):
            out = out | self.to_task(i, by_name.get(f.name, RangeSet()))
        return out
