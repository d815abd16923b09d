"""A 1,000-file batch in JupyterLab 4 + headless Chromium: one row, not a thousand.

A notebook uploads a folder of 1,000 small files plus one over the server's size limit with
``%upload FOLDER`` and shows the panel. The batch is one row (in its cell and in the panel, two
views of one widget) with files done/total; no row exists per file; Pause and Resume act on
the whole batch; the failure is listed with its server code (4002); *Files* shows one page of
100 files (made only when expanded) and *Next* the following page. Every wait is on a
condition in the page, with generous timeouts (the machine may be busy).
"""

from __future__ import annotations

import functools
import re

from browser_support import ARTIFACTS, wait_until, write_notebook

FILES = 1000
THROTTLE = "16KiB"  # about a minute for the batch: still running when the test pauses it, on any machine


_wait = functools.partial(wait_until, timeout=120.0, step=0.2)  # a 1,000-file batch is slow


def _state(row) -> str:
    return row.locator(".nbupload-state").first.get_attribute("data-state") or ""


def _done(row) -> int:
    text = row.locator(".nbupload-batch-files").first.inner_text()
    m = re.match(r"(\d+)/(\d+) files", text)
    assert m, text
    return int(m.group(1))


def test_a_thousand_file_batch_is_one_row_steered_and_expanded(lab, page):
    ARTIFACTS.mkdir(exist_ok=True)
    folder = lab.root / "many"
    for i in range(FILES):
        sub = folder / f"run{i // 100}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"m{i:04d}.csv").write_bytes(b"%04d," % i * 200)
    (folder / "big.bin").write_bytes(b"x" * (16 << 10))
    srv = lab.root / "batch-srv"
    write_notebook(
        lab.root / "batch.ipynb",
        [
            "%load_ext nbupload",
            f"%upload server start --root {srv} --throttle {THROTTLE} --max-file-size 8KiB",
            f"b = %upload {folder} -o",
            "%upload panel",
        ],
    )
    page.goto(f"{lab.url}/doc/tree/batch.ipynb")
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return k && k.status === 'idle'; }",
        timeout=120_000,
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.locator(".nbupload-panel").wait_for(timeout=120_000)
    rows = page.locator(".nbupload-batch-row")
    _wait(lambda: rows.count() == 2, what="the batch row in its cell and in the panel")
    row = page.locator(".nbupload-panel .nbupload-batch-row").first
    _wait(
        lambda: f"/{FILES + 1} files" in row.locator(".nbupload-batch-files").first.inner_text(),
        what="every file of the folder counted",
    )

    # one row for the batch, none per file, and no file table until expanded
    assert page.locator(".nbupload-row:not(.nbupload-batch-row)").count() == 0
    assert page.locator(".nbupload-batch-file").count() == 0

    # pause the whole batch while it runs, then resume it
    _wait(lambda: _done(row) >= 1 and _state(row) == "running", what="the batch running")
    row.locator(".nbupload-batch-pause").click()
    _wait(lambda: _state(row) == "paused", what="the batch paused")
    held = _done(row)
    assert held < FILES
    row.locator(".nbupload-batch-resume").click()
    _wait(lambda: _state(row) in ("running", "failed"), what="the batch resumed")
    assert page.locator(".nbupload-row:not(.nbupload-batch-row)").count() == 0

    # it ends with 1,000 files done and the one too big listed with its code
    _wait(lambda: _state(row) == "failed", timeout=600, what="the batch settled")
    _wait(lambda: _done(row) == FILES, what="every file but the big one counted done")  # may lag a frame
    failure = row.locator(".nbupload-batch-failure").first
    assert failure.get_attribute("data-code") == "4002"
    assert "big.bin [4002]" in failure.inner_text()
    assert len(list(srv.rglob("*.csv"))) == FILES
    assert (srv / "run7" / "m0777.csv").read_bytes() == (folder / "run7" / "m0777.csv").read_bytes()

    # the files, one page at a time, on demand
    row.locator(".nbupload-batch-expand").click()
    files = row.locator(".nbupload-batch-file")
    _wait(lambda: files.count() == 100, what="the first page of files")
    first = files.filter(has_text="run0/m0000.csv").first.inner_text()  # files in walk order
    assert "done" in first
    assert "failed" in files.filter(has_text="big.bin").first.inner_text()
    row.locator(".nbupload-batch-next").click()
    _wait(lambda: files.filter(has_text="run1/m0100.csv").count() == 1, what="the second page")
    assert files.count() == 100 and files.filter(has_text="run0/m0000.csv").count() == 0
    page.locator(".nbupload-panel").screenshot(path=str(ARTIFACTS / "panel-batch-1000.png"))
