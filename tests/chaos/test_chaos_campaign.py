"""The seeded fault campaign (see campaign.py): a short fixed-seed run here, the long one
under ``-m chaos``. Both must end with zero corrupted, lost or duplicated files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from chaos_campaign import KINDS, REPORTS, Campaign, format_table, plan

SHORT_SEED = 20261121
REPO = Path(__file__).resolve().parents[2]


def _campaign(tmp_path: Path, seed: int, runs: int) -> list:
    campaign = Campaign(tmp_path, log=print)
    try:
        for spec in plan(seed, runs):
            campaign.run(spec)
    finally:
        campaign.close()
    table = format_table(campaign.results, seed)
    REPORTS.append(table)
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / f"chaos-seed{seed}-runs{runs}.md").write_text(table + "\n")
    return campaign.results


def _assert_clean(results: list) -> None:
    bad = [r for r in results if r.outcome not in ("ok", "detected")]
    assert not bad, "\n".join(
        f"run {r.spec.index} {r.spec.protocol} {r.spec.size} B {'+'.join(r.spec.kinds)}: "
        f"{r.outcome}: {r.detail}"
        for r in bad
    )


@pytest.mark.timeout(300)
def test_short_campaign_every_fault_kind_once(tmp_path):
    results = _campaign(tmp_path, SHORT_SEED, len(KINDS))
    injected = set()
    for r in results:
        injected |= {kind for kind, n in r.injected.items() if n}
    assert injected == set(KINDS), f"never injected: {sorted(set(KINDS) - injected)}"
    _assert_clean(results)


@pytest.mark.chaos
@pytest.mark.timeout(0)
def test_long_campaign(tmp_path):
    runs = int(os.environ.get("NBUPLOAD_CHAOS_RUNS", "200"))
    seed = int(os.environ.get("NBUPLOAD_CHAOS_SEED", "1"))
    _assert_clean(_campaign(tmp_path, seed, runs))
