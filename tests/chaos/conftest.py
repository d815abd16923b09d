"""The fault campaign's settings and report.

The short, fixed-seed campaign runs with every plain ``pytest``. The long one is marked
``chaos`` and only runs when asked for: ``pytest tests/chaos -m chaos`` (``make chaos``),
with ``NBUPLOAD_CHAOS_RUNS`` (default 200) and ``NBUPLOAD_CHAOS_SEED`` (default 1). Each
campaign's table is printed at the end of the session and written to ``test-artifacts/``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nbupload.engine import Engine
from tests.support.engines import engine_factory

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


def pytest_terminal_summary(terminalreporter) -> None:
    campaign = sys.modules.get("chaos_campaign")
    for table in getattr(campaign, "REPORTS", []):
        terminalreporter.write_sep("=", "fault campaign")
        terminalreporter.write_line(table)


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    """An :class:`Engine` as the chaos tests run it: its journal in ``tmp_path / "journal"``,
    quick retries (backoff from 0.05 s, capped at 0.3 s) so a fault costs little time; any
    other :class:`EngineConfig` setting, or these, as keyword arguments. A test shuts it down
    where it must (``with make_engine(...) as engine:``, before closing the proxy and the
    server); the fixture shuts down whatever is still running at the end."""
    with engine_factory(journal_dir=tmp_path / "journal", backoff_base=0.05, backoff_cap=0.3) as make:
        yield make
