"""The fault campaign's settings and report.

The short, fixed-seed campaign runs with every plain ``pytest``. The long one is marked
``chaos`` and only runs when asked for: ``pytest tests/chaos -m chaos`` (``make chaos``),
with ``NBUPLOAD_CHAOS_RUNS`` (default 200) and ``NBUPLOAD_CHAOS_SEED`` (default 1). Each
campaign's table is printed at the end of the session and written to ``test-artifacts/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "hostile"))  # hostile_net: server process, raw HTTP
sys.path.insert(0, str(HERE.parents[1]))  # tests.support: the fault-injecting proxy


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "chaos: the long randomized fault campaign (make chaos; NBUPLOAD_CHAOS_RUNS, NBUPLOAD_CHAOS_SEED)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the long campaign out unless ``-m`` names it (deselected, not skipped)."""
    if "chaos" in (config.getoption("markexpr", "") or ""):
        return
    keep = [item for item in items if item.get_closest_marker("chaos") is None]
    dropped = [item for item in items if item.get_closest_marker("chaos") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's own type
    campaign = sys.modules.get("chaos_campaign")
    for table in getattr(campaign, "REPORTS", []):
        terminalreporter.write_sep("=", "fault campaign")
        terminalreporter.write_line(table)
