"""Sizes, rates and durations as people write and read them (``4MiB``, ``12.5 MB/s``)."""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "format_rate", "format_size", "parse_size"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """``"4MiB"`` -> 4194304, ``"4MB"`` -> 4000000, ``"1024"`` -> 1024.

    Raises ``ValueError`` with a message fit for a command line.
    """
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"size must not be negative: {text}")
        return text
    m = _SIZE.match(str(text))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS:
        raise ValueError(f"invalid size {text!r}: use bytes or a unit such as 512KiB, 4MiB, 1GB")
    value = float(m.group(1)) * _UNITS[unit]
    if value != math.floor(value):
        raise ValueError(f"invalid size {text!r}: not a whole number of bytes")
    return int(value)


def format_size(n: float) -> str:
    """Binary units in plain notation, about three significant digits: ``1.50 MiB``,
    ``12.5 MiB``, ``1000 MiB`` (never ``1e+03``)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(n)} B"
            if abs(n) >= 99.95:
                return f"{n:.0f} {unit}"
            return f"{n:.2f} {unit}" if abs(n) < 9.995 else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_rate(bytes_per_second: float) -> str:
    return f"{format_size(bytes_per_second)}/s" if bytes_per_second > 0 else "-"


def format_duration(seconds: float | None) -> str:
    """``1:02:03``, ``2:03``, or ``-`` when unknown."""
    if seconds is None or seconds < 0 or math.isinf(seconds) or math.isnan(seconds):
        return "-"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
