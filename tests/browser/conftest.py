"""JupyterLab 4 in headless Debian Chromium, driven by Playwright (never ``playwright install``).

JupyterLab runs on 127.0.0.1 on a free port with temporary JUPYTER_*/IPYTHONDIR/NBUPLOAD_HOME
directories and is stopped by PID. Without chromium the tests fail when ``CI=true`` (CI must
run them) and are skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_support import ARTIFACTS, KERNEL_DIAGNOSIS, kernel_output

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        # never a skip: a missing browser fails; leave these tests out with -m "not browser"
        pytest.fail(
            "the browser tests need Debian's chromium on PATH (make browser, or "
            "sudo apt-get install chromium); run the rest with -m 'not browser'"
        )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str
    root: Path
    home: Path
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, chromium_path: str) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("lab")
    root, home = base / "root", base / "nbupload-home"
    root.mkdir()
    env = dict(os.environ)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        (base / name.lower()).mkdir()
        env[name] = str(base / name.lower())
    env["NBUPLOAD_HOME"] = str(home)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    settings = base / "lab-settings"
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # Widget comm messages go to a kernel subshell (JupyterLab's default, stated as a user would
    # in Settings > Kernel): row buttons then act while a cell runs (docs/notebook.md).
    kernels = settings / "@jupyterlab" / "apputils-extension" / "kernels-settings.jupyterlab-settings"
    kernels.write_text(json.dumps({"commsOverSubshells": "perCommTarget"}))
    env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(base / "lab-workspaces")
    env.pop("JUPYTER_PATH", None)
    log = base / "jupyterlab.log"
    # The port is picked free and then bound by JupyterLab (port_retries=0, so it never
    # silently moves elsewhere); another process may take it in between: start again then.
    for _attempt in range(3):
        port = _free_port()
        proc, url = _start_lab(port, env, root, log)
        try:
            if _wait_lab(proc, url, log):
                break
        except BaseException:
            _stop(proc)
            raise
    else:
        raise RuntimeError(f"JupyterLab found its port taken three times:\n{log.read_text()[-3000:]}")
    try:
        yield Lab(url, root, home, proc, log)
    finally:
        _stop(proc)


def _lab_command(port: int, root: Path) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd


def _start_lab(port: int, env: dict[str, str], root: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            _lab_command(port, root), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root
        )
    return proc, f"http://127.0.0.1:{port}"


def _wait_lab(proc: subprocess.Popen[bytes], url: str, log: Path) -> bool:
    """True once JupyterLab answers; False if it exited because its port was taken."""
    deadline = time.monotonic() + 180  # a loaded 2-core machine starts Lab slowly
    while True:
        if proc.poll() is not None:
            text = log.read_text(errors="replace")
            if "already in use" in text or "Address already in use" in text:
                return False
            raise RuntimeError(f"JupyterLab exited ({proc.returncode}):\n{text[-3000:]}")
        try:
            if httpx.get(f"{url}/api/status", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"JupyterLab did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.3)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)  # JupyterLab shuts its kernels down on SIGTERM
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: object, lab: Lab, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh browser context; afterwards every kernel of the Lab is shut down.

    Each test starts from a Lab with no kernel: kernels left uploading by earlier tests of the
    module would share the two cores with this one. A failed test leaves its screenshot, what
    the kernel says about its tasks, rows and threads, and the end of the Lab's log in
    test-artifacts/.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    pg = context.new_page()
    try:
        yield pg
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            _keep_failure(pg, lab, request.node.name)
        context.close()
        _shut_down_kernels(lab)


def _keep_failure(pg: Any, lab: Lab, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"failure-{name}.png"))
    try:
        diagnosis = kernel_output(pg, KERNEL_DIAGNOSIS)
    except Exception as exc:  # noqa: BLE001 - a diagnosis must not hide the test's own failure
        diagnosis = f"(no diagnosis: {type(exc).__name__}: {exc})"
    log_tail = lab.log.read_text(errors="replace")[-20_000:]
    (ARTIFACTS / f"failure-{name}-kernel.txt").write_text(diagnosis)
    (ARTIFACTS / f"failure-{name}-jupyterlab.log").write_text(log_tail)
    print(f"--- the kernel after the failure ---\n{diagnosis}")
    print(f"--- the end of the Lab's log ---\n{log_tail[-4000:]}")


def _shut_down_kernels(lab: Lab) -> None:
    """Shut down every session's kernel (Lab's REST API) and wait until none is left."""
    with httpx.Client(base_url=lab.url, timeout=60) as client:
        client.get("/lab")  # sets the _xsrf cookie that every request but a GET must echo
        xsrf = {"X-XSRFToken": client.cookies.get("_xsrf") or ""}
        for session in client.get("/api/sessions").json():
            client.delete(f"/api/sessions/{session['id']}", headers=xsrf).raise_for_status()
        for kernel in client.get("/api/kernels").json():  # kernels without a session too
            client.delete(f"/api/kernels/{kernel['id']}", headers=xsrf).raise_for_status()
        deadline = time.monotonic() + 60
        while client.get("/api/kernels").json():
            if time.monotonic() > deadline:
                raise RuntimeError("JupyterLab kept a kernel 60 s after shutting it down")
            time.sleep(0.2)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
