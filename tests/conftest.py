"""Suite-wide setup: ``tests.support`` importable from every layer, and the Hypothesis profile.

The profile is ``ci`` unless ``--hypothesis-profile`` (``make fuzz``) or the
``NBUPLOAD_HYPOTHESIS_PROFILE`` environment variable picks another; the header of every run
says which, with its settings and seed, so a failure can be replayed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests.support` importable

from tests.support.fuzzing import PROFILE_ENV, register_profiles

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
