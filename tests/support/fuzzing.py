"""Hypothesis profiles for the whole suite, and how many examples a property test asks for.

``ci`` is the default (tests/conftest.py loads it): derandomized, so every run of the test
command tries the same examples and a property that passed once passes every time; no deadline,
so a busy machine cannot fail a test; no example database, so a run does not depend on what an
earlier one left in ``.hypothesis/``. ``fuzz`` (``make fuzz``) is the long randomized search for
the next bug: fifty times the examples, a random seed that the run prints, failures replayed
from the database.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

__all__ = ["CI_EXAMPLES", "FUZZ_EXAMPLES", "PROFILE_ENV", "examples", "register_profiles"]

#: The environment variable that picks a profile when ``--hypothesis-profile`` is not given.
PROFILE_ENV = "NBUPLOAD_HYPOTHESIS_PROFILE"
CI_EXAMPLES = 200
FUZZ_EXAMPLES = 50 * CI_EXAMPLES
_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]


def register_profiles() -> None:
    """Register ``ci`` and ``fuzz`` (idempotent)."""
    settings.register_profile(
        "ci",
        max_examples=CI_EXAMPLES,
        derandomize=True,
        deadline=None,
        print_blob=True,
        suppress_health_check=_SLOW,
    )
    settings.register_profile(
        "fuzz",
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        print_blob=True,
        suppress_health_check=_SLOW,
    )


def examples(share: float) -> int:
    """``share`` of the loaded profile's ``max_examples`` (at least 10).

    A property test whose examples are expensive (a server round trip, megabytes hashed) asks for
    a share rather than a number, so ``make fuzz`` scales it up with everything else.
    """
    current = settings.default
    assert current is not None, "tests/conftest.py loads a profile first"
    return max(10, round(current.max_examples * share))
