"""The upload panel in JupyterLab 4 + headless Chromium, clicked like a person would.

Run a notebook that loads the extension, starts the embedded server (throttled, with a
12 MiB limit) and shows the panel; start an upload from the form, watch the segmented bar
grow, pause mid-upload and resume, reach done with the stored file's sha256 checked, then
see a too-large upload fail with its 4002 code inline. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import hashlib
import os
import time

from browser_support import ARTIFACTS, wait_until, write_notebook

THROTTLE = 384 * 1024  # bytes/s (the whole server): an 8 MiB upload takes over 20 s, time to pause it


def _acked(row) -> int:
    return int(row.locator(".nbupload-bar").get_attribute("data-acked"))


def _state(row) -> str:
    return row.locator(".nbupload-state").get_attribute("data-state")


def test_panel_upload_pause_resume_done_and_failure(lab, page):
    ARTIFACTS.mkdir(exist_ok=True)
    srv = lab.root / "srv"
    good = lab.root / "good.bin"
    good_data = os.urandom(8 * 1024 * 1024)
    good.write_bytes(good_data)
    background = lab.root / "background.bin"
    background.write_bytes(os.urandom(5 * 512 * 1024))
    big = lab.root / "too-big.bin"
    big.write_bytes(os.urandom(16 * 1024 * 1024))
    write_notebook(
        lab.root / "panel.ipynb",
        [
            "%load_ext nbupload",
            f"%upload server start --root {srv} --throttle {THROTTLE} --max-file-size 12MiB",
            f"%upload {background} --chunk-size 256KiB",  # a second task (and its inline live row)
            "%upload panel",
        ],
    )

    page.goto(f"{lab.url}/doc/tree/panel.ipynb")
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return k && k.status === 'idle'; }",
        timeout=90_000,
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    panel = page.locator(".nbupload-panel")
    page.locator(".nbupload-row").filter(has_text="background.bin").first.wait_for(timeout=60_000)
    panel.wait_for(timeout=60_000)
    page.locator(".nbupload-url input").wait_for()
    wait_until(lambda: page.locator(".nbupload-url input").input_value().endswith("/upload"))

    # start from the form, by clicking
    page.locator(".nbupload-path input").fill(str(good))
    page.locator(".nbupload-chunk input").fill("128KiB")
    page.locator(".nbupload-start").click()
    row = page.locator(".nbupload-row").filter(has_text="good.bin")
    row.wait_for(timeout=30_000)

    # the segmented bar grows
    first = wait_until(lambda: _acked(row) or None)
    wait_until(lambda: _acked(row) > first)
    assert row.locator(".nbupload-segment").count() >= 1
    wait_until(lambda: _acked(row) >= len(good_data) // 8)  # then pause: seconds of upload left
    page.locator(".nbupload-panel").screenshot(path=str(ARTIFACTS / "panel-mid-upload.png"))

    # pause mid-upload, then resume
    row.locator(".nbupload-pause").click()
    wait_until(lambda: _state(row) == "paused")
    held = _acked(row)
    assert 0 < held < len(good_data)
    time.sleep(0.6)
    assert _acked(row) == held and _state(row) == "paused"
    assert row.locator(".nbupload-resume").is_enabled()
    row.locator(".nbupload-resume").click()
    wait_until(lambda: _state(row) == "done", timeout=180)
    assert _acked(row) == len(good_data)
    assert (
        hashlib.sha256((srv / "good.bin").read_bytes()).hexdigest() == hashlib.sha256(good_data).hexdigest()
    )

    # a file over the server's max_file_size fails with its code inline
    page.locator(".nbupload-path input").fill(str(big))
    page.locator(".nbupload-start").click()
    bad = page.locator(".nbupload-row").filter(has_text="too-big.bin")
    error = bad.locator(".nbupload-error")
    error.wait_for(timeout=30_000)
    assert error.get_attribute("data-code") == "4002"
    assert error.inner_text().startswith("4002 File exceeded max_file_size")
    # 4002 cannot succeed on a retry: Retry is disabled, Cancel is not
    assert _state(bad) == "failed" and not bad.locator(".nbupload-retry").is_enabled()
    assert bad.locator(".nbupload-cancel").is_enabled()
    assert not (srv / "too-big.bin").exists()
    # the row %upload displayed in its cell and the panel's row are views of one live widget
    other = page.locator(".nbupload-row").filter(has_text="background.bin")
    assert other.count() == 2
    for i in range(2):
        wait_until(lambda i=i: _state(other.nth(i)) == "done", timeout=60)
    assert (srv / "background.bin").read_bytes() == background.read_bytes()
    page.locator(".nbupload-panel").screenshot(path=str(ARTIFACTS / "panel-done-and-failed.png"))


def test_offers_of_this_notebook_forget_and_a_new_upload_not_starved_by_resume_all(lab, page):
    """Stale journal entries of another kernel: ten of this notebook's to a server that is gone
    (its port takes connections and never answers), one of another notebook's. The panel offers
    this notebook's, with the rest behind Show all; Forget removes one; after Resume all, an
    upload started from the form finishes while the old ones still wait."""
    import socket

    from nbupload.engine import Engine, EngineConfig
    from nbupload.server import start_server

    notebook = lab.root / "offers.ipynb"
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    live = start_server(root=lab.root / "srv-offers")
    try:
        gone = f"http://127.0.0.1:{hole.getsockname()[1]}/upload"
        old = Engine(EngineConfig(journal_dir=lab.home / "tasks"))
        for i in range(11):
            src = lab.root / f"stale-{i}.bin"
            src.write_bytes(os.urandom(64 * 1024))
            owner = str(notebook) if i < 10 else str(lab.root / "other.ipynb")
            old.submit(src, gone, start=False, labels={"notebook": owner})
        old.shutdown(wait=True)
        fresh = lab.root / "fresh.bin"
        fresh.write_bytes(os.urandom(2 * 1024 * 1024))
        write_notebook(
            notebook,
            [
                "%load_ext nbupload\n%config Uploader.workers = 2\n"
                "%config Uploader.connect_timeout = 600\n%config Uploader.read_timeout = 600\n"
                "%config Uploader.stall_timeout = 600",
                "%upload panel",
            ],
        )
        page.goto(f"{lab.url}/doc/tree/offers.ipynb")
        page.wait_for_function(
            "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
            " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
            " return k && k.status === 'idle'; }",
            timeout=90_000,
        )
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        offers = page.locator(".nbupload-panel .nbupload-offer")
        wait_until(lambda: offers.count() == 10, timeout=60)
        listed = page.locator(".nbupload-offers").inner_text()
        assert "10 unfinished uploads from a previous session" in listed
        # the other notebook's entry (and the failed upload of the test before, from panel.ipynb)
        shown_all = page.locator(".nbupload-offer-show-all").inner_text().strip()
        assert shown_all.startswith("Show all (") and shown_all.endswith(" more)"), shown_all
        assert "stale-10.bin" not in page.locator(".nbupload-offers").inner_text()
        # Forget one
        first = offers.first
        forgotten = first.locator("span.nbupload-offer-text").inner_text().split(" [")[0]
        first.locator(".nbupload-offer-forget").click()
        wait_until(lambda: offers.count() == 9)
        assert forgotten not in page.locator(".nbupload-offers").inner_text()
        page.locator(".nbupload-offer-show-all").click()
        wait_until(lambda: "stale-10.bin" in page.locator(".nbupload-offers").inner_text())
        page.locator(".nbupload-offer-show-mine").click()
        wait_until(lambda: "stale-10.bin" not in page.locator(".nbupload-offers").inner_text())
        # Resume all: nine old tasks take every worker slot and wait (their server never answers)
        page.locator(".nbupload-offer-resume-all").click()
        rows = page.locator(".nbupload-panel .nbupload-row")
        wait_until(lambda: rows.count() == 9, timeout=60)
        # a new upload from the form starts at once and finishes
        page.locator(".nbupload-url input").fill(live.upload_url)
        page.locator(".nbupload-path input").fill(str(fresh))
        page.locator(".nbupload-start").click()
        row = page.locator(".nbupload-row").filter(has_text="fresh.bin").first
        wait_until(lambda: _state(row) == "done", timeout=60)
        assert (live.root / "fresh.bin").read_bytes() == fresh.read_bytes()
        states = [_state(rows.nth(i)) for i in range(rows.count())]
        assert states.count("done") == 1, states
        assert all(s in ("queued", "connecting", "done") for s in states), states
        page.locator(".nbupload-panel").screenshot(path=str(ARTIFACTS / "panel-offers-resumed.png"))
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    finally:
        live.stop()
        hole.close()
