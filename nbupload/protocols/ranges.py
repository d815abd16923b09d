"""Half-open byte intervals, as the uploader protocol exchanges them.

``0-102400`` is exactly 102400 bytes (start inclusive, end exclusive); several
intervals are comma-separated: ``0-102400,204800-307200``. A :class:`RangeSet` is an
immutable, normalised (sorted, merged, non-empty) set of such intervals, so it can be
shared between the worker threads and the UI without locks.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .errors import ProtocolError

__all__ = ["ByteRange", "RangeSet", "format_range_attr", "parse_range_attr"]


@dataclass(frozen=True, order=True)
class ByteRange:
    """One half-open interval ``[start, end)``."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ProtocolError(f"invalid byte range {self.start}-{self.end}")

    def __len__(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def _parse_int(text: str, what: str) -> int:
    text = text.strip()
    # isdecimal() alone admits non-ASCII digits; the wire format is ASCII only.
    if not text.isascii() or not text.isdecimal() or len(text) > 19:
        raise ProtocolError(f"invalid {what}: {text!r}")
    return int(text)


class RangeSet:
    """A normalised set of half-open byte intervals."""

    __slots__ = ("_spans",)

    def __init__(self, spans: Iterable[tuple[int, int] | ByteRange] = ()) -> None:
        items = sorted(
            (s.start, s.end) if isinstance(s, ByteRange) else (int(s[0]), int(s[1])) for s in spans
        )
        merged: list[tuple[int, int]] = []
        for start, end in items:
            if start < 0 or end < start:
                raise ProtocolError(f"invalid byte range {start}-{end}")
            if start == end:
                continue
            if merged and start <= merged[-1][1]:
                if end > merged[-1][1]:
                    merged[-1] = (merged[-1][0], end)
            else:
                merged.append((start, end))
        self._spans: tuple[tuple[int, int], ...] = tuple(merged)

    # -- wire format -------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str | None) -> RangeSet:
        """Parse ``"0-10,20-30"``; ``None`` or blank means nothing held."""
        if text is None:
            return cls()
        text = str(text).strip()
        if not text:
            return cls()
        spans = []
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            start_s, sep, end_s = item.partition("-")
            if not sep:
                raise ProtocolError(f"invalid byte range {item!r}: expected start-end")
            start = _parse_int(start_s, "range start")
            end = _parse_int(end_s, "range end")
            if end < start:
                raise ProtocolError(f"invalid byte range {item!r}: end before start")
            spans.append((start, end))
        return cls(spans)

    def __str__(self) -> str:
        return ",".join(f"{s}-{e}" for s, e in self._spans)

    def __repr__(self) -> str:
        return f"RangeSet({str(self)!r})"

    # -- value semantics ---------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and self._spans == other._spans

    def __hash__(self) -> int:
        return hash(self._spans)

    def __bool__(self) -> bool:
        return bool(self._spans)

    def __iter__(self) -> Iterator[ByteRange]:
        return (ByteRange(s, e) for s, e in self._spans)

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        return self._spans

    # -- set algebra -------------------------------------------------------------------
    def add(self, start: int, end: int) -> RangeSet:
        return RangeSet((*self._spans, (start, end)))

    def union(self, other: RangeSet) -> RangeSet:
        return RangeSet((*self._spans, *other._spans))

    __or__ = union

    def covered(self) -> int:
        """Number of bytes held."""
        return sum(e - s for s, e in self._spans)

    def contains(self, start: int, end: int) -> bool:
        """Whether ``[start, end)`` is entirely held."""
        if start >= end:
            return True
        i = bisect_left(self._spans, (start + 1,)) - 1
        return i >= 0 and self._spans[i][0] <= start and end <= self._spans[i][1]

    def covers(self, total: int) -> bool:
        """Whether every byte of ``[0, total)`` is held."""
        return self.contains(0, total)

    def missing(self, total: int) -> RangeSet:
        """The intervals of ``[0, total)`` not held yet."""
        gaps = []
        pos = 0
        for s, e in self._spans:
            if s >= total:
                break
            if s > pos:
                gaps.append((pos, s))
            pos = max(pos, e)
        if pos < total:
            gaps.append((pos, total))
        return RangeSet(gaps)

    def clip(self, total: int) -> RangeSet:
        """The part of this set inside ``[0, total)``."""
        return RangeSet((s, min(e, total)) for s, e in self._spans if s < total)

    def prefix(self) -> int:
        """Length of the contiguous run held from byte 0 (0 if byte 0 is missing)."""
        return self._spans[0][1] if self._spans and self._spans[0][0] == 0 else 0

    def end(self) -> int:
        """One past the highest byte held (0 when empty)."""
        return self._spans[-1][1] if self._spans else 0

    def pieces(self, size: int) -> Iterator[ByteRange]:
        """Cut every interval into consecutive pieces of at most ``size`` bytes."""
        if size <= 0:
            raise ValueError("piece size must be positive")
        for s, e in self._spans:
            for start in range(s, e, size):
                yield ByteRange(start, min(start + size, e))


def format_range_attr(start: int, end: int, total: int) -> str:
    """The ``range`` Content-Disposition value ``start-end/total``."""
    ByteRange(start, end)
    if end > total:
        raise ProtocolError(f"range {start}-{end} past total {total}")
    return f"{start}-{end}/{total}"


def parse_range_attr(text: str) -> tuple[int, int, int]:
    """Parse ``start-end/total``; raise :class:`ProtocolError` when malformed."""
    span, sep, total_s = str(text).partition("/")
    if not sep:
        raise ProtocolError(f"invalid range attribute {text!r}: expected start-end/total")
    start_s, sep, end_s = span.partition("-")
    if not sep:
        raise ProtocolError(f"invalid range attribute {text!r}: expected start-end/total")
    start = _parse_int(start_s, "range start")
    end = _parse_int(end_s, "range end")
    total = _parse_int(total_s, "range total")
    if end < start:
        raise ProtocolError(f"invalid range attribute {text!r}: end before start")
    if end > total:
        raise ProtocolError(f"invalid range attribute {text!r}: end past total")
    return start, end, total
