"""The panel's file picker in JupyterLab 4 + headless Chromium: files set on its input with
Playwright stream to the kernel in slices, land intact at the server, survive a page reload
mid-transfer without resending, and keep the kernel's memory flat."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import psutil
import pytest
from browser_support import ARTIFACTS, wait_until, write_notebook

MiB = 1 << 20
#: Through the browser, JupyterLab's websocket and the kernel, a pick moves at about 5-8 MB/s on
#: the 2-core test machine: 1 GiB takes minutes, so it is the ``slow`` case and the default run
#: checks the same things (reload, exactly-once, RSS) on 96 MiB.
SIZES = [
    pytest.param(96 * MiB, id="96MiB"),
    pytest.param(1024 * MiB, id="1GiB", marks=[pytest.mark.slow, pytest.mark.timeout(1800)]),
]


def _random_file(path: Path, size: int) -> str:
    """``size`` random bytes written in pieces; returns their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 16 * MiB))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(16 * MiB):
            digest.update(block)
    return digest.hexdigest()


def _kernel(lab) -> psutil.Process:
    procs = [
        p
        for p in psutil.Process(lab.proc.pid).children(recursive=True)
        if any("ipykernel" in part for part in p.cmdline())
    ]
    assert len(procs) == 1, procs
    return procs[0]


class PeakRss(threading.Thread):
    """The process's highest resident set size, sampled every 50 ms until stopped."""

    def __init__(self, proc: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.start_rss = proc.memory_info().rss
        self.peak = self.start_rss
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return

    def stop(self) -> int:
        self._stop_event.set()
        self.join(5)
        return self.peak - self.start_rss


def _open_and_run(page, lab, name: str) -> None:
    page.goto(f"{lab.url}/doc/tree/{name}")
    _wait_idle(page)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.locator(".nbupload-picker-input").first.wait_for(state="attached", timeout=90_000)


def _wait_idle(page) -> None:
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return k && k.status === 'idle'; }",
        timeout=90_000,
    )


def _spooled(lab, name: str) -> list[Path]:
    """The spool files (data and sidecar) of picks named ``name`` on the kernel's disk."""
    spool = lab.home / "spool" / "browser"
    if not spool.is_dir():
        return []
    out = []
    for meta in spool.glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            if json.loads(meta.read_text())["name"] == name:
                out += [meta, meta.with_suffix(".data")]
    return out


def _pick(page, name: str):
    return page.locator(f'.nbupload-pick[data-name="{name}"]').last


def _attr(loc, name: str) -> str:
    """The attribute, or "" if absent; raises Playwright's TimeoutError while the element is not
    there (being re-rendered): ``wait_until`` counts that as "not yet"."""
    return loc.get_attribute(name, timeout=5_000) or ""


@pytest.fixture
def notebook(lab):
    srv = lab.root / "srv"
    write_notebook(
        lab.root / "picker.ipynb",
        [
            "%load_ext nbupload",
            f"%upload server start --root {srv}",
            "%upload panel",
        ],
    )
    return srv


def test_a_30_mib_pick_uploads_intact(lab, page, notebook, tmp_path):
    src = tmp_path / "thirty.bin"
    want = _random_file(src, 30 * MiB)
    _open_and_run(page, lab, "picker.ipynb")
    started = time.monotonic()
    page.locator(".nbupload-picker-input").first.set_input_files(str(src))
    pick = _pick(page, "thirty.bin")
    wait_until(lambda: _attr(pick, "data-task"), timeout=120, what="the pick reaching the kernel")
    spooled_in = time.monotonic() - started
    assert int(_attr(pick, "data-spooled")) == 30 * MiB
    row = page.locator(".nbupload-row").filter(has_text="thirty.bin").first
    wait_until(
        lambda: row.locator(".nbupload-state").get_attribute("data-state") == "done",
        timeout=120,
        what="the upload finishing",
    )
    total = time.monotonic() - started
    assert _sha256(notebook / "thirty.bin") == want
    # the pick shows both legs: browser -> kernel, then kernel -> server, both finished
    wait_until(lambda: _attr(pick, "data-upload-state") == "done", what="the pick's upload leg finishing")
    assert int(_attr(pick, "data-uploaded")) == 30 * MiB and int(_attr(pick, "data-spooled")) == 30 * MiB
    legs = pick.locator(".nbupload-pick-bytes").all_inner_texts()
    assert legs == ["30.0 MiB / 30.0 MiB in the kernel", "30.0 MiB / 30.0 MiB at the server"], legs
    assert pick.locator(".nbupload-pick-upload-state").inner_text() == "uploaded"
    # the spool is removed once the upload is done
    wait_until(lambda: not _spooled(lab, "thirty.bin"), what="the spool being removed")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".nbupload-form").screenshot(path=str(ARTIFACTS / "picker-30mib.png"))
    print(f"\n30 MiB pick: browser->kernel {spooled_in:.1f} s, until done at the server {total:.1f} s")


def test_a_folder_or_unreadable_file_gets_a_message(lab, page, notebook, tmp_path):
    _open_and_run(page, lab, "picker.ipynb")
    gone = tmp_path / "vanishing.bin"
    gone.write_bytes(os.urandom(3 * MiB))
    page.locator(".nbupload-picker-input").first.set_input_files(str(gone))
    gone.unlink()  # it disappears while (or before) the browser reads it
    message = page.locator(".nbupload-picker-message .nbupload-error").first
    wait_until(lambda: message.count() and "vanishing.bin" in message.inner_text(), what="the read error")
    assert "could not read vanishing.bin in the browser" in message.inner_text()
    entry = _pick(page, "vanishing.bin")
    wait_until(lambda: _attr(entry, "data-state") == "failed", what="the kernel's entry failing")
    assert "could not read vanishing.bin" in entry.inner_text()
    # Cancel removes what the kernel holds of it
    assert _spooled(lab, "vanishing.bin")
    entry.locator(".nbupload-pick-cancel").click()
    wait_until(lambda: _attr(entry, "data-state") == "cancelled", what="the cancel")
    assert not _spooled(lab, "vanishing.bin")
    # a folder dropped on the picker
    page.evaluate(
        """() => {
        const root = document.querySelector('.nbupload-picker-root');
        const dt = new DataTransfer();
        const folder = {kind: 'file', getAsFile: () => null,
                        webkitGetAsEntry: () => ({isDirectory: true, name: 'results'})};
        const ev = new DragEvent('drop', {bubbles: true, cancelable: true});
        Object.defineProperty(ev, 'dataTransfer', {value: {items: [folder], files: dt.files}});
        root.dispatchEvent(ev);
    }"""
    )
    wait_until(
        lambda: "results is a folder" in page.locator(".nbupload-picker-message").first.inner_text(),
        what="the folder message",
    )
    # files dropped on the picker go the same way as picked ones
    page.evaluate(
        """() => {
        const dt = new DataTransfer();
        dt.items.add(new File(["dropped on the picker"], "dropped.txt", {type: "text/plain"}));
        const ev = new DragEvent('drop', {bubbles: true, cancelable: true, dataTransfer: dt});
        document.querySelector('.nbupload-picker-root').dispatchEvent(ev);
    }"""
    )
    wait_until((notebook / "dropped.txt").is_file, what="the dropped file at the server")
    assert (notebook / "dropped.txt").read_bytes() == b"dropped on the picker"


@pytest.mark.parametrize("size", SIZES)
def test_a_big_pick_survives_a_reload_and_keeps_the_kernel_small(lab, page, notebook, tmp_path, size):
    BIG = size
    name = f"big-{size // MiB}.bin"
    src = tmp_path / name
    want = _random_file(src, BIG)
    _open_and_run(page, lab, "picker.ipynb")
    # saved now, so the reload below leaves at once (no "unsaved changes" prompt to wait on)
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    page.on("dialog", lambda dialog: dialog.accept())
    received_before = int(_attr(page.locator(".nbupload-picker-root").first, "data-received"))
    rss = PeakRss(_kernel(lab))
    rss.start()
    started = time.monotonic()
    page.locator(".nbupload-picker-input").first.set_input_files(str(src))
    pick = _pick(page, name)
    wait_until(
        lambda: int(_attr(pick, "data-spooled") or 0) >= BIG // 3, timeout=300, what="a third of the file"
    )

    # reload the page mid-transfer, show the panel again, pick the same file again
    page.reload()
    _wait_idle(page)
    page.evaluate(
        "() => { const nb = window.jupyterapp.shell.currentWidget.content;"
        " nb.activeCellIndex = nb.widgets.length - 1;"
        " return window.jupyterapp.commands.execute('notebook:run-cell'); }"
    )
    root = page.locator(".nbupload-picker-root").last
    root.wait_for(timeout=90_000)
    held = int(
        wait_until(
            lambda: _attr(root.locator(f'.nbupload-pick[data-name="{name}"]'), "data-spooled"),
            timeout=120,
            what="the kept part of the pick shown again",
        )
    )
    assert BIG // 3 <= held < BIG
    page.locator(".nbupload-picker-input").last.set_input_files(str(src))
    wait_until(
        lambda: _attr(_pick(page, name), "data-task"), timeout=600, what="the whole file in the kernel"
    )
    spooled_in = time.monotonic() - started
    row = page.locator(".nbupload-row").filter(has_text=name).last
    wait_until(
        lambda: row.locator(".nbupload-state").get_attribute("data-state") == "done",
        timeout=600,
        what="the upload finishing",
    )
    total = time.monotonic() - started
    growth = rss.stop()
    # every byte reached the kernel exactly once: nothing that arrived before the reload was resent
    received = int(_attr(page.locator(".nbupload-picker-root").last, "data-received")) - received_before
    assert received == BIG
    assert _sha256(notebook / name) == want
    assert growth < 64 * MiB, f"kernel RSS grew by {growth / MiB:.1f} MiB"
    wait_until(lambda: not _spooled(lab, name), what="the spool being removed")
    print(
        f"\n{BIG // MiB} MiB pick with a reload at {held / MiB:.0f} "
        f"MiB: in the kernel after {spooled_in:.1f} s, "
        f"done at the server after {total:.1f} s; kernel RSS growth {growth / MiB:.1f} MiB"
    )


#: Installed in the page before JupyterLab loads: once ``window.__nbGate.limit`` is set, the
#: page sends at most that many bytes more to its kernels (kernel channel websockets) and drops
#: the rest, until the limit is cleared. It holds a pick's transfer short of the whole file
#: however fast the page, the kernel and the machine are: waiting until some of it arrived and
#: then restarting the kernel let the whole file arrive first on a loaded machine (fresh-clone
#: run 24, five runs at once beside a CPU hog).
_KERNEL_SEND_GATE = """(() => {
  const send = WebSocket.prototype.send;
  window.__nbGate = {limit: null, sent: 0, dropped: 0};
  WebSocket.prototype.send = function (data) {
    const gate = window.__nbGate;
    if (gate.limit !== null && String(this.url).includes('/channels')) {
      if (gate.sent >= gate.limit) { gate.dropped += 1; return; }
      gate.sent += data.byteLength ?? data.size ?? data.length ?? 0;
    }
    return send.call(this, data);
  };
})()"""


def test_a_kernel_restart_mid_transfer_continues_from_the_spool(lab, page, notebook, tmp_path):
    size = 48 * MiB
    src = tmp_path / "restart.bin"
    want = _random_file(src, size)
    page.add_init_script(_KERNEL_SEND_GATE)
    _open_and_run(page, lab, "picker.ipynb")
    # the old kernel gets at most half the file (plus the slices in flight when it restarts)
    page.evaluate(f"window.__nbGate.limit = {size // 2}")
    page.locator(".nbupload-picker-input").first.set_input_files(str(src))
    wait_until(
        lambda: int(_attr(_pick(page, "restart.bin"), "data-spooled") or 0) >= size // 4, what="a quarter"
    )

    gate = page.evaluate("({...window.__nbGate})")
    assert gate["sent"] >= size // 4, gate  # the gate saw the slices go (it is in their way)

    # a kernel restart mid-transfer: the new kernel finds the spool and its sidecar on disk
    page.evaluate(
        "() => { window.__nbGate.limit = null;"
        " return window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart(); }"
    )
    _wait_idle(page)
    page.evaluate("window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    page.locator(".nbupload-picker-root").wait_for(state="detached", timeout=30_000)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    root = page.locator(".nbupload-picker-root").last
    entry = root.locator('.nbupload-pick[data-name="restart.bin"]')
    entry.wait_for(timeout=90_000)
    assert _attr(entry, "data-state") == "incomplete"
    held = int(_attr(entry, "data-spooled"))
    assert 0 < held < size
    assert int(_attr(root, "data-received")) == 0  # a new kernel
    root.locator(".nbupload-picker-input").set_input_files(str(src))
    wait_until(lambda: _attr(entry, "data-task"), timeout=300, what="the rest of the file in the kernel")
    row = page.locator(".nbupload-row").filter(has_text="restart.bin").last
    wait_until(
        lambda: row.locator(".nbupload-state").get_attribute("data-state") == "done",
        timeout=300,
        what="the upload finishing",
    )
    assert _sha256(notebook / "restart.bin") == want
    # only what the old kernel did not hold was sent again
    assert int(_attr(root, "data-received")) == size - held
