"""Backoff timing, retryable statuses and Retry-After parsing (engine/retry.py), no network."""

from __future__ import annotations

import random
import time

import pytest

from nbupload.engine.retry import Backoff, is_retryable_status, parse_retry_after


def test_backoff_full_jitter_within_exponential_bounds():
    b = Backoff(retries=10, base=0.5, cap=4.0, deadline=1e9, rng=random.Random(1))
    for n in range(1, 9):
        d = b.next_delay()
        assert d is not None and 0 <= d <= min(4.0, 0.5 * 2 ** (n - 1))


def test_backoff_gives_up_after_retries_and_resets_on_progress():
    b = Backoff(retries=2, base=0.01, cap=0.01, deadline=1e9)
    assert b.next_delay() is not None and b.next_delay() is not None
    assert b.next_delay() is None
    b.progress()
    assert b.failures == 0 and b.next_delay() is not None
    assert b.total_failures == 4


def test_backoff_deadline_bounds_a_streak():
    now = [0.0]
    b = Backoff(retries=100, base=0.01, cap=0.01, deadline=10.0, clock=lambda: now[0])
    assert b.next_delay() is not None
    now[0] = 11.0
    assert b.next_delay() is None


def test_backoff_honours_retry_after():
    b = Backoff(retries=5, base=0.01, cap=10.0, deadline=1e9)
    assert b.next_delay(retry_after=3.0) >= 3.0


@pytest.mark.parametrize(
    "status,expected",
    [
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (507, True),
        (400, False),
        (401, False),
        (413, False),
        (404, False),
        (501, False),
    ],
)
def test_retryable_statuses(status, expected):
    assert is_retryable_status(status) is expected


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    from email.utils import formatdate

    assert 50 < parse_retry_after(formatdate(time.time() + 60, usegmt=True)) <= 61
