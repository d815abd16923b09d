"""A row shown by ``%upload FILE`` alone, in JupyterLab 4 + headless Chromium.

No ``%upload panel`` anywhere: the row must be styled by itself (a bar with height that
grows, an error styled with AA contrast), keep updating while another cell sleeps (the pump
has its own thread), show a Pause click at once ("pausing…") and act on it before the
sleeping cell ends (JupyterLab sends comm messages to a subshell; ipykernel 7 runs it on a
thread). Then a row layout check at 1280/1400/1600 px in light and dark themes with a long
file name, and ``%upload server stop`` / ``%reload_ext nbupload`` under a slow upload without
a traceback. Screenshots go to test-artifacts/ (and docs/images/panel.png with
NBUPLOAD_UPDATE_DOCS_IMAGES=1).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import httpx
import ipykernel
from browser_support import ARTIFACTS, wait_until, write_notebook

from tests.support.kernels import kernel_python_with_ipykernel6

KIB = 1024
MIB = 1024 * KIB
REPO = Path(__file__).resolve().parents[2]

_KERNEL = (
    "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
    " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
    " return k ? k.status : null; }"
)


def _open(page, lab, name: str) -> None:
    page.goto(f"{lab.url}/doc/tree/{name}")
    page.wait_for_function(
        _KERNEL.replace("return k ? k.status : null;", "return k && k.status === 'idle';"), timeout=90_000
    )


def _run_all(page) -> None:
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")


def _run_above(page, index: int) -> None:
    """Run the cells above cell ``index`` (the last one waits for its turn)."""
    page.evaluate(
        f"() => {{ window.jupyterapp.shell.currentWidget.content.activeCellIndex = {index};"
        " return window.jupyterapp.commands.execute('notebook:run-all-above'); }"
    )


def _run_cell(page, index: int) -> None:
    """Start running cell ``index`` (not waiting for it to end)."""
    page.evaluate(
        f"() => {{ window.jupyterapp.shell.currentWidget.content.activeCellIndex = {index};"
        " window.jupyterapp.commands.execute('notebook:run-cell'); }"
    )


_SUBSHELLS = (
    "() => { const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;"
    " return {supportsSubshells: k.supportsSubshells, commsOverSubshells: k.commsOverSubshells}; }"
)


def _server_url(outputs: str) -> str:
    """The embedded server's URL, as ``%upload server start`` printed it."""
    found = re.search(r"nbupload reference server at (http://127\.0\.0\.1:\d+)", outputs)
    assert found, outputs[-2000:]
    return found.group(1)


def _server_bytes(url: str) -> int:
    """File bytes the server has received (its own counter, ``GET /_nbupload/stats``)."""
    return int(httpx.get(f"{url}/_nbupload/stats", timeout=10).json()["total"]["bytes"])


def _cell_running(page, index: int) -> bool:
    """The cell's prompt shows ``[*]`` while it executes (what a user sees)."""
    prompt = page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputPrompt")
    return "*" in prompt.inner_text()


def _kernel_status(page) -> str | None:
    return page.evaluate(_KERNEL)


def _outputs(page) -> str:
    return "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())


def _acked(row) -> int:
    return int(row.locator(".nbupload-bar").first.get_attribute("data-acked"))


def _state(row) -> str:
    return row.locator(".nbupload-state").first.get_attribute("data-state")


# Contrast of an element's text against the first opaque background behind it (WCAG 2).
_CONTRAST_JS = """(el) => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  let bg = null, node = el;
  while (node && node.nodeType === 1) { const c = rgb(getComputedStyle(node).backgroundColor);
    if (c.length >= 3 && (c.length < 4 || c[3] > 0.9)) { bg = c; break; } node = node.parentElement; }
  if (!bg) bg = [255, 255, 255];
  const fg = rgb(getComputedStyle(el).color);
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return {ratio: (a + 0.05) / (b + 0.05), color: getComputedStyle(el).color, background: bg.join(',')};
}"""

# Boxes of a row's parts: they must stay inside the row and never overlap each other.
_LAYOUT_JS = """(row) => {
  const box = e => {
    const r = e.getBoundingClientRect();
    return {x: r.left, y: r.top, r: r.right, b: r.bottom, w: r.width, h: r.height};
  };
  const sel = ['.nbupload-name-cell', '.nbupload-bar-cell', '.nbupload-state-cell'];
  const parts = [];
  for (const s of sel) { const e = row.querySelector(s); if (e) parts.push([s, e]); }
  row.querySelectorAll('.nbupload-button').forEach((e, i) => {
    const st = getComputedStyle(e);
    if (st.display !== 'none' && st.visibility !== 'hidden') parts.push(['button' + i, e]);
  });
  const stats = row.querySelector('.nbupload-stats');
  const bar = row.querySelector('.nbupload-bar');
  const out = {row: box(row), parts: parts.map(([n, e]) => [n, box(e), e.scrollWidth, e.clientWidth]),
               stats: stats ? [box(stats), stats.scrollWidth, stats.clientWidth] : null,
               bar: bar ? box(bar) : null,
               statsCell: row.querySelector('.nbupload-bar-cell')
                 ? box(row.querySelector('.nbupload-bar-cell')) : null};
  return out;
}"""


def _check_layout(page, row, label: str) -> None:
    geo = row.evaluate(_LAYOUT_JS)
    outer = geo["row"]
    eps = 0.75
    boxes = geo["parts"]
    assert len(boxes) >= 4, (label, boxes)  # name, bar, state and at least one button
    for name, b, scroll_w, client_w in boxes:
        assert b["w"] > 0 and b["h"] > 0, (label, name, b)
        assert b["x"] >= outer["x"] - eps and b["r"] <= outer["r"] + eps, (
            label,
            name,
            "outside the row",
            b,
            outer,
        )
        if name.startswith("button"):
            assert scroll_w <= client_w + 1, (label, name, "button text clipped", scroll_w, client_w)
    for i, (n1, a, _, _) in enumerate(boxes):
        for n2, b, _, _ in boxes[i + 1 :]:
            overlap_x = min(a["r"], b["r"]) - max(a["x"], b["x"])
            overlap_y = min(a["b"], b["b"]) - max(a["y"], b["y"])
            assert overlap_x <= eps or overlap_y <= eps, (label, "overlap", n1, a, n2, b)
    stats_box, scroll_w, client_w = geo["stats"]
    assert scroll_w <= client_w + 1, (label, "stats clipped", scroll_w, client_w)
    cell = geo["statsCell"]
    assert stats_box["r"] <= cell["r"] + eps, (label, "stats overflow their cell", stats_box, cell)
    assert geo["bar"]["h"] > 0 and geo["bar"]["w"] > 20, (label, geo["bar"])
    # the name is cut with an ellipsis, its full text on hover
    name = row.locator(".nbupload-name").first
    assert name.evaluate("e => getComputedStyle(e).textOverflow") == "ellipsis"


def test_row_alone_is_styled_live_during_a_sleep_and_pauses_at_once(lab, page):
    _live_row_during_a_sleep(lab, page, "live", kernel=None, subshells=ipykernel.version_info >= (7,))


def test_the_same_under_ipykernel_6(lab, page, tmp_path):
    """ipykernel 6 (a kernelspec for a virtualenv with ipykernel 6 from the registry): rows
    stay live during a sleep (the pump's thread); it has no subshells, so a Pause shows
    "pausing…" at once and takes effect when the cell ends (docs/notebook.md says so)."""
    python = kernel_python_with_ipykernel6(tmp_path / "ipykernel6")
    spec = lab.root.parent / "jupyter_data_dir" / "kernels" / "nbupload-ipykernel6"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (ipykernel 6)",
                "language": "python",
            }
        )
    )
    _live_row_during_a_sleep(lab, page, "live6", kernel="nbupload-ipykernel6", subshells=False)


def _live_row_during_a_sleep(lab, page, tag: str, *, kernel: str | None, subshells: bool) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    srv = lab.root / f"srv-{tag}"
    big = lab.root / f"{tag}.bin"
    big.write_bytes(os.urandom(12 * MIB))
    write_notebook(
        lab.root / f"{tag}.ipynb",
        [
            "%load_ext nbupload",
            f"%upload server start --root {srv} --throttle 256KiB",
            # one stream of fixed 128 KiB chunks: an acknowledgement every half second at 256 KiB/s
            # (chunks would grow, and 4 streams finish together), so the row has news to show
            f"%upload {big} --chunk-size 128KiB --chunk-max 128KiB --streams 1",
            "import time, ipykernel\nprint('ipykernel', ipykernel.__version__)\n"
            "time.sleep(15)\nprint('slept')",
        ],
        kernel=kernel,
    )
    _open(page, lab, f"{tag}.ipynb")
    _run_above(page, 3)
    row = page.locator(".nbupload-row").filter(has_text=f"{tag}.bin").first
    row.wait_for(timeout=60_000)

    # styled without a panel on the page: the bar has a height and a track colour
    bar = row.locator(".nbupload-bar").first
    wait_until(lambda: (bar.bounding_box() or {}).get("height", 0) > 0, what="a bar with height")
    assert page.locator(".nbupload-panel").count() == 0
    track = bar.evaluate("e => getComputedStyle(e).backgroundColor")
    assert track not in ("rgba(0, 0, 0, 0)", "transparent"), track
    wait_until(lambda: _acked(row) > 0 and not _cell_running(page, 2), what="the upload under way")
    server = _server_url(_outputs(page))
    assert _server_bytes(server) > 0

    # live while the sleep cell runs: the displayed bytes grow at least three times
    _run_cell(page, 3)
    wait_until(lambda: _cell_running(page, 3), what="the sleep cell running")
    seen = [_acked(row)]
    end = time.monotonic() + 6
    while time.monotonic() < end and len(set(seen)) < 4:
        time.sleep(0.4)
        seen.append(_acked(row))
    assert _cell_running(page, 3) and "slept" not in _outputs(page)
    growth = sorted(set(seen))
    assert len(growth) >= 4, f"the row did not keep growing during the sleep: {seen}"

    # Pause during the sleep. JupyterLab sends the click to a kernel subshell when the kernel
    # supports them and commsOverSubshells is not "disabled" (the lab fixture sets the default,
    # perCommTarget, as a user would); ipykernel 7 runs the subshell on its own thread, and the
    # row's buttons route clicks there (nbupload/panel/subshells.py), so the pause takes effect
    # while the cell still sleeps. Without subshells the row shows "pausing…" at once (drawn by
    # the browser from the click) and pauses when the cell ends.
    wait_until(lambda: "ipykernel " in _outputs(page), what="the kernel's version")
    major = "7" if subshells else "6"
    assert f"ipykernel {major}." in _outputs(page), _outputs(page)[-500:]  # the kernel we meant
    found = page.evaluate(_SUBSHELLS)
    print(f"frontend and kernel: {found}")
    assert found["supportsSubshells"] == subshells, found
    subshells_on = subshells and found["commsOverSubshells"] != "disabled"
    received_before = _server_bytes(server)
    row.locator(".nbupload-pause").first.click()
    state = row.locator(".nbupload-state").first
    shown = (
        "e => e.innerText.trim() === 'pausing…' || getComputedStyle(e, '::after').content === '\"pausing…\"'"
    )
    wait_until(lambda: state.evaluate(shown) or _state(row) == "paused", timeout=3, what="pausing… shown")
    assert "slept" not in _outputs(page) and _cell_running(page, 3)
    page.screenshot(path=str(ARTIFACTS / f"row-alone-pausing-{tag}.png"))
    if subshells_on:
        # the pause acts during the sleep: the row says paused and the server stops receiving
        wait_until(lambda: _state(row) == "paused" or not _cell_running(page, 3), timeout=40, what="paused")
        assert _cell_running(page, 3) and "slept" not in _outputs(page), "the pause waited for the cell"
        readings = [_server_bytes(server)]

        def server_still() -> bool:
            time.sleep(0.5)
            readings.append(_server_bytes(server))
            return readings[-1] == readings[-2] or not _cell_running(page, 3)

        wait_until(server_still, timeout=20, step=0, what="the server's byte count to stop growing")
        held = _server_bytes(server)
        assert received_before < held < 12 * MIB, (received_before, held)
        time.sleep(1.0)  # a window in which a running upload would send ~256 KiB more
        assert _server_bytes(server) == held, (held, _server_bytes(server))
        assert _cell_running(page, 3) and "slept" not in _outputs(page), "the cell ended before the checks"
        print(f"pause took effect during the sleeping cell; the server holds {held} bytes")
    wait_until(lambda: _state(row) == "paused", timeout=40, what="paused")
    held = _acked(row)
    assert 0 < held < 12 * MIB
    time.sleep(0.6)
    assert _acked(row) == held and _state(row) == "paused"
    page.screenshot(path=str(ARTIFACTS / f"row-alone-paused-{tag}.png"))
    wait_until(lambda: "slept" in _outputs(page), timeout=30, what="the sleep cell ending")


def test_error_row_is_styled_with_aa_contrast_in_light_and_dark(lab, page):
    srv = lab.root / "srv-err"
    huge = lab.root / "over-limit.bin"
    huge.write_bytes(os.urandom(3 * MIB))
    write_notebook(
        lab.root / "error.ipynb",
        [
            "%load_ext nbupload",
            f"%upload server start --root {srv} --max-file-size 1MiB",
            f"%upload {huge}",
        ],
    )
    _open(page, lab, "error.ipynb")
    _run_all(page)
    row = page.locator(".nbupload-row").filter(has_text="over-limit.bin").first
    error = row.locator(".nbupload-error").first
    error.wait_for(timeout=60_000)
    assert error.get_attribute("data-code") == "4002"
    for theme in ("JupyterLab Light", "JupyterLab Dark"):
        page.evaluate(f"window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{theme}'}})")
        light = "true" if "Light" in theme else "false"
        page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'", timeout=30_000)
        time.sleep(0.3)  # the theme's stylesheet swaps in after the attribute
        got = error.evaluate(_CONTRAST_JS)
        assert got["color"] not in ("rgb(0, 0, 0)",) or light == "false", got
        assert got["ratio"] >= 4.5, (theme, got)
        state = row.locator(".nbupload-state").first.evaluate(_CONTRAST_JS)
        assert state["ratio"] >= 4.5, (theme, state)
    page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})")


def _eventually(check, timeout: float = 30.0) -> None:
    """Run ``check`` until it passes; after ``timeout`` seconds its last failure is the test's."""
    end = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except (AssertionError, TypeError):  # TypeError: an element without a box while it re-lays out
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def _check_bars_line_up(page, label: str) -> None:
    """In one panel, a running row (four buttons) and a finished one (Clear only) have bars
    of the same left edge and width."""
    bars = page.locator(".nbupload-panel .nbupload-row .nbupload-bar")
    boxes = [bars.nth(i).bounding_box() for i in range(bars.count())]
    states = [bars.nth(i).get_attribute("data-state") for i in range(bars.count())]
    assert len(boxes) >= 2 and "done" in states and len(set(states)) >= 2, (label, states)
    for box in boxes[1:]:
        assert abs(box["x"] - boxes[0]["x"]) <= 1 and abs(box["width"] - boxes[0]["width"]) <= 1, (
            label,
            "bars do not line up",
            states,
            boxes,
        )


def test_rows_fit_at_common_widths_in_light_and_dark(lab, page):
    srv = lab.root / "srv-fit"
    long_name = "a-rather-long-file-name-from-the-instrument-run-2026-11-29-detector-B-calibrated-v3.bin"
    path = lab.root / long_name
    path.write_bytes(os.urandom(6 * MIB))
    done = lab.root / "small-done.bin"
    done.write_bytes(os.urandom(64 * KIB))
    write_notebook(
        lab.root / "fit.ipynb",
        [
            "%load_ext nbupload",
            f"%upload server start --root {srv} --throttle 96KiB",
            f"%upload {done}",
            f"%upload {path} --chunk-size 64KiB",
            "%upload panel",
        ],
    )
    _open(page, lab, "fit.ipynb")
    _run_all(page)
    page.locator(".nbupload-panel").wait_for(timeout=60_000)
    rows = page.locator(".nbupload-row").filter(has_text="detector-B")
    wait_until(lambda: rows.count() == 2 and _acked(rows.first) > 0, what="two views of the long-named row")
    wait_until(
        lambda: _state(page.locator(".nbupload-row").filter(has_text="small-done.bin").first) == "done"
    )
    for theme in ("JupyterLab Light", "JupyterLab Dark"):
        page.evaluate(f"window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{theme}'}})")
        light = "true" if "Light" in theme else "false"
        page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'", timeout=30_000)
        for width in (1280, 1400, 1600):
            page.set_viewport_size({"width": width, "height": 1000})

            def fits(theme: str = theme, width: int = width) -> None:
                for i in range(rows.count()):
                    _check_layout(page, rows.nth(i), f"{theme} {width}px view {i}")
                finished = page.locator(".nbupload-row").filter(has_text="small-done.bin")
                for i in range(finished.count()):
                    _check_layout(page, finished.nth(i), f"{theme} {width}px done view {i}")
                _check_bars_line_up(page, f"{theme} {width}px")

            _eventually(fits)  # the layout settles after the resize (slowly on a busy machine)
            tag = "light" if light == "true" else "dark"
            page.locator(".nbupload-panel").screenshot(path=str(ARTIFACTS / f"panel-{tag}-{width}.png"))
            if tag == "light" and width == 1400 and os.environ.get("NBUPLOAD_UPDATE_DOCS_IMAGES"):
                # the README's picture; a plain test run never changes tracked files
                page.locator(".nbupload-panel").screenshot(path=str(REPO / "docs" / "images" / "panel.png"))
    page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})")
    page.evaluate("window.jupyterapp.commands.execute('notebook:interrupt-kernel')")


def test_server_stop_and_reload_during_a_slow_upload_print_no_traceback(lab, page):
    srv = lab.root / "srv-stop"
    slow = lab.root / "slow.bin"
    slow.write_bytes(os.urandom(8 * MIB))
    write_notebook(
        lab.root / "stop.ipynb",
        [
            "%load_ext nbupload",
            f"%upload server start --root {srv} --throttle 128KiB",
            f"%upload {slow} --chunk-size 64KiB",
            "import time\ntime.sleep(2)",
            "%reload_ext nbupload",
            "time.sleep(2)",
            "%upload server stop",
            "print('all ran')",
        ],
    )
    _open(page, lab, "stop.ipynb")
    _run_all(page)
    wait_until(lambda: "all ran" in _outputs(page), timeout=120, what="the notebook to finish")
    joined = _outputs(page)
    for bad in ("Traceback", "CancelledError", "timeout graceful shutdown", "Error"):
        assert bad not in joined, (bad, joined[-3000:])
    assert "nbupload reloaded: 1 running upload kept going" in joined, joined
    assert "1 displayed row re-attached" in joined
    assert "paused 1 upload to it" in joined, joined
    row = page.locator(".nbupload-row").filter(has_text="slow.bin").first
    # the row displayed before the reload was re-attached: it shows the pause of the server stop
    wait_until(lambda: _state(row) == "paused", timeout=30, what="the re-attached row to show paused")
    assert _acked(row) > 0


def test_a_saved_notebook_shows_the_text_fallback_not_model_not_found(lab, page):
    """Run, save, shut the kernel down, reload: every row and the panel read as text."""
    srv = lab.root / "srv-saved"
    small = lab.root / "saved-small.bin"
    small.write_bytes(os.urandom(64 * KIB))
    write_notebook(
        lab.root / "saved.ipynb",
        [
            "%load_ext nbupload",
            f"%upload server start --root {srv}",
            f"%upload {small} --wait",
            "%upload panel",
        ],
    )
    _open(page, lab, "saved.ipynb")
    _run_all(page)
    page.locator(".nbupload-panel").wait_for(timeout=60_000)
    row = page.locator(".nbupload-row").filter(has_text="saved-small.bin").first
    wait_until(lambda: _state(row) == "done", what="the row to show done")
    wait_until(lambda: _kernel_status(page) == "idle", what="the notebook to finish")
    fallback = page.locator(".nbupload-fallback")
    wait_until(lambda: fallback.count() == 2, what="a fallback after the row and after the panel")
    # while the widgets live, their fallbacks are hidden
    assert not fallback.first.is_visible() and not fallback.nth(1).is_visible()
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=60_000)
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    wait_until(lambda: _kernel_status(page) is None, what="the kernel to shut down")

    # reopened: the old widgets' models are gone with their kernel
    page.reload()
    failed = page.locator(".jp-OutputArea-output.jupyter-widgets").filter(has_text="model not found")
    wait_until(lambda: failed.count() == 2, timeout=90, what="the widget views to find no model")
    for i in range(failed.count()):
        assert not failed.nth(i).is_visible()
    text = page.locator(".nbupload-fallback")
    wait_until(lambda: text.count() == 2 and text.first.is_visible(), what="the fallback text")
    assert text.first.inner_text().strip() == "nbupload: saved-small.bin — done, 64.0 KiB"
    panel_text = text.nth(1).inner_text()
    assert panel_text.startswith("nbupload panel:") and "saved-small.bin — done, 64.0 KiB" in panel_text
    assert not page.get_by_text("model not found").first.is_visible()
    page.screenshot(path=str(ARTIFACTS / "saved-notebook-fallback.png"))
