"""Summaries of repeated measurements: median with min and max, and ratios of medians."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass

__all__ = ["Summary", "ratio", "summarize"]


@dataclass(frozen=True)
class Summary:
    median: float
    min: float
    max: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(values: Iterable[float]) -> Summary | None:
    """Median, min, max of the values; None when there are none."""
    data = sorted(float(v) for v in values)
    if not data:
        return None
    return Summary(statistics.median(data), data[0], data[-1], len(data))


def ratio(value: Summary | None, reference: Summary | None) -> float | None:
    """``value.median / reference.median``, None when either is missing or zero."""
    if value is None or reference is None or reference.median == 0:
        return None
    return value.median / reference.median
