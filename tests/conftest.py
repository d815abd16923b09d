"""Suite-wide setup: ``tests.support`` importable from every layer, the Hypothesis profile, and
the ``chunk_gate`` fixture.

The profile is ``ci`` unless ``--hypothesis-profile`` (``make fuzz``) or the
``NBUPLOAD_HYPOTHESIS_PROFILE`` environment variable picks another; the header of every run
says which, with its settings and seed, so a failure can be replayed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests.support` importable

from tests.support.fuzzing import PROFILE_ENV, register_profiles
from tests.support.gate import ChunkGate

register_profiles()
settings.load_profile(os.environ.get(PROFILE_ENV, "ci"))


def pytest_report_header(config: pytest.Config) -> str:
    current = settings.default
    seed = config.getoption("hypothesis_seed", None)
    how = "derandomized (the same examples every run)" if current.derandomize else f"seed {seed or 'random'}"
    return (
        f"hypothesis: profile {settings.get_current_profile_name()!r}, max_examples={current.max_examples}, "
        f"deadline={current.deadline}, {how}"
    )


@pytest.fixture
def chunk_gate() -> Iterator[Callable[..., ChunkGate]]:
    """``chunk_gate(server_url, passes=N)``: a :class:`ChunkGate` in front of that server (the
    upload cannot finish before the test acts on it), closed when the test ends (HTTPS: also
    ``server_ssl=`` and ``upstream_ssl=``)."""
    gates: list[ChunkGate] = []

    def make(target_url: str, passes: int, **tls: Any) -> ChunkGate:
        gate = ChunkGate(str(target_url), passes, **tls)
        gates.append(gate)
        return gate

    yield make
    for gate in gates:
        gate.close()
