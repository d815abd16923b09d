"""The link scenarios end to end, tiny (``python -m benchmarks --links --quick``).

Timings are not asserted; what could rot is: every client still completes in every
scenario through the emulator with the exact size, the emulator's ceiling is measured,
pause and cancel still act over a slow link, the report still renders, and a links-only
run writes ``links.*`` without touching the loopback results.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.clients import LINK_CLIENTS, engine_streams
from benchmarks.links import SCENARIOS

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("links-out")
    work = tmp_path_factory.mktemp("links-work")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--links", "--quick", "--link-size", "3MiB",
         "--out", str(out), "--workdir", str(work)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "links.json").read_text())
    return {
        "data": data,
        "md": (out / "links.md").read_text(),
        "out": out,
        "work": work,
        "stdout": proc.stdout,
    }


def test_every_client_completes_in_every_scenario_with_the_exact_size(run: dict) -> None:
    section = run["data"]["links"]
    samples = [s for s in section["samples"] if s["error"] != "n/a"]
    expected = {(c, s.name) for c in LINK_CLIENTS for s in SCENARIOS}
    if engine_streams() is None:  # streams=1 needs the keyword: n/a before the streams engine
        expected -= {("nbupload-uploader-s1", s.name) for s in SCENARIOS}
    assert {(s["client"], s["target"]) for s in samples} == expected
    for s in samples:
        assert s["ok"], (s["client"], s["target"], s["error"])
        assert s["received"] == s["size"] == 3 << 20
    assert section["streams"] == engine_streams()


def test_the_emulators_ceiling_is_measured(run: dict) -> None:
    rows = run["data"]["links"]["ceiling"]
    assert {(r["link"], r["flows"]) for r in rows} == {
        (link, n) for link in ("relay", "delay line, 20 ms RTT") for n in (1, 4)
    }
    assert all(r["rate"] and r["rate"]["median"] > 0 and not r["errors"] for r in rows), rows
    # read from /proc, in clock ticks: a 3 MiB transfer may cost less than one tick, so only >= 0
    assert all(r["cpu_per_gb"] is not None and r["cpu_per_gb"]["median"] >= 0 for r in rows), rows


def test_pause_and_cancel_act_over_a_slow_link(run: dict) -> None:
    (control,) = run["data"]["links"]["control"]
    assert not control["errors"], control["errors"]
    (trial,) = control["trials"]
    assert trial["pause_state"] == "paused" and trial["cancel_state"] == "cancelled"
    assert trial["pause_wire_stop"] >= 0 and trial["cancel_wire_stop"] >= 0


def test_targets_are_printed_beside_the_figures_and_the_report_renders(run: dict) -> None:
    md = run["md"]
    for heading in ("## Targets", "## 8. Link scenarios", "#### Summary", "#### The emulator's own ceiling",
                    "#### Pause and cancel over slow links"):  # fmt: skip
        assert heading in md
    for s in SCENARIOS:
        assert f"(`{s.name}`" in md
    figures = {c["figure"] for c in run["data"]["targets"]}
    assert any(f.startswith("nbupload-uploader / curl -F (40 MB/s per flow") for f in figures)
    assert ">= 2.5x" in md and "target" in run["stdout"]


def test_a_links_run_leaves_the_loopback_results_alone_and_cleans_up(run: dict) -> None:
    assert not (run["out"] / "latest.json").exists() and not (run["out"] / "latest.md").exists()
    assert list(run["work"].rglob("*.bin")) == []
