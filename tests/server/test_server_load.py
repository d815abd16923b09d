"""The short version of ``benchmarks/server_load.py``: concurrent mixed uploads against
``serve --workers 2``, every file checked. Counts only; the figures are the benchmark's."""

from __future__ import annotations

from benchmarks.server_load import run


def test_short_load_against_two_workers_loses_corrupts_and_duplicates_nothing():
    report = run(12, 1024, 3 << 20, workers=2, concurrency=12)
    figures = report.as_dict()
    print(f"\nshort server load: {figures}")
    assert (report.lost, report.corrupted, report.duplicated, report.failed_requests) == (0, 0, 0, 0), figures
    assert len(report.per_worker) == 2  # both workers were up and answering
    assert sum(report.per_worker.values()) == len(
        report.latencies
    )  # every request was answered by one of them
