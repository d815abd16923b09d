"""The benchmark suite end to end, tiny: every client completes and every size matches.

Timings are not asserted (the machine is shared); what could rot is asserted: each client
still runs against both servers, the servers still count what arrived, resume still
finishes a killed upload, the kernel still shows widgets, the report still renders.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.clients import CLIENTS

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench-out")
    work = tmp_path_factory.mktemp("bench-work")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-warmup", "--sizes", "3MiB",
         "--rss-sizes", "2MiB,6MiB", "--out", str(out), "--workdir", str(work)],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "machine:" in proc.stdout and "target" in proc.stdout
    data = json.loads((out / "latest.json").read_text())
    data["_markdown"] = (out / "latest.md").read_text()
    data["_workdir"] = work
    return data


def test_every_client_completes_against_both_servers_with_the_exact_size(results: dict) -> None:
    samples = results["throughput"]["samples"]
    ran = {(s["client"], s["target"]) for s in samples if s["error"] != "n/a"}
    expected = {(c, t) for c in CLIENTS for t in ("sink", "reference")} - {("curl-T", "reference")}
    assert ran == expected
    for s in samples:
        if s["error"] == "n/a":
            continue
        assert s["ok"], (s["client"], s["target"], s["error"])
        assert s["received"] == s["size"] == 3 << 20
        assert s["seconds"] > 0 and s["maxrss"] > 1 << 20 and s["cpu_process"] > 0


def test_rss_growth_measured_for_every_client(results: dict) -> None:
    rows = {r["client"]: r for r in results["rss_growth"]["rows"]}
    assert set(rows) == set(CLIENTS)
    for r in rows.values():
        assert not r["errors"] and r["rss_small"] > 1 << 20 and r["rss_large"] > 1 << 20


def test_resume_after_sigkill_completes_and_cancel_is_measured(results: dict) -> None:
    rows = {r["protocol"]: r for r in results["resume"]["rows"]}
    assert set(rows) == {"uploader", "wcs-append"}
    for r in rows.values():
        assert not r["errors"], r["errors"]
        (trial,) = r["trials"]
        assert 0 < trial["at_kill"] < r["size"]
        assert trial["total"] >= r["size"] and trial["resent"] == trial["total"] - r["size"]
    cancel = results["resume"]["cancel"]
    assert not cancel["errors"], cancel["errors"]
    (trial,) = cancel["trials"]
    assert trial["cancel_state"] == "cancelled" and trial["pause_state"] == "paused"


def test_panel_sends_widget_messages_and_cells_run(results: dict) -> None:
    panel = results["panel"]
    assert panel["one_task"]["comm_msgs"] > 0 and panel["one_task"]["row_updates"] > 0
    assert panel["cell_samples"] >= 1 and panel["cell"]["n"] == panel["cell_samples"]
    assert panel["kernel_errors"] == []


def test_ingest_rows_complete(results: dict) -> None:
    rows = results["ingest"]["rows"]
    assert {(r["client"], r["concurrency"], r["target"]) for r in rows} == {
        (c, n, t) for c in ("curl-F", "nbupload-uploader") for n in (1, 4) for t in ("sink", "reference")
    }
    for r in rows:
        assert not r["errors"] and r["rate"]["median"] > 0, r


def test_report_names_the_machine_and_every_section(results: dict) -> None:
    md = results["_markdown"]
    for heading in ("## Targets", "## 1–3.", "## 2.", "## 4–5.", "## 6.", "## 7."):
        assert heading in md
    assert results["machine"]["cores"] >= 1 and results["machine"]["cpu"]
    assert results["load_before"] and results["load_after"]
    assert {c["figure"] for c in results["targets"]} >= {"cancel latency"}


def test_big_files_are_cleaned_up(results: dict) -> None:
    leftovers = [p for p in results["_workdir"].rglob("*.bin")]
    assert leftovers == []
