"""No secret key or full token ever appears: logs (server and engine, at DEBUG), reprs, error
messages, events, the journal, the CLI's output, and the notebook's widget state.

Secrets used here: WCS secret keys (a right one and a wrong one), an explicit upload token,
and a secret header and form field of an uploader task. A *full token* is recognised by
its shape ``AccessKey:EncodedSign:EncodedPolicy`` whatever its signature.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_client import make_token
from hostile_net import ServerProcess

from nbupload.engine import Engine, EngineConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.helpers import pause_each_when, wait_for
from tests.support.proxy import Fault, FaultProxy

pytestmark = pytest.mark.timeout(180)

MiB = 1024 * 1024
AK = "AKsecrets"
SK = "SK-never-show-" + os.urandom(8).hex()
WRONG_SK = "SK-wrong-never-show-" + os.urandom(8).hex()
BEARER = "bearer-never-show-" + os.urandom(8).hex()
FIELD_SECRET = "field-never-show-" + os.urandom(8).hex()
FULL_TOKEN = re.compile(re.escape(AK) + r":[A-Za-z0-9_\-=]{8,}:[A-Za-z0-9_\-=]{8,}")
REPO = Path(__file__).resolve().parents[2]


def leaks(text: str, extra: tuple[str, ...] = ()) -> list[str]:
    found = [s for s in (SK, WRONG_SK, BEARER, FIELD_SECRET, *extra) if s and s in text]
    found += FULL_TOKEN.findall(text)
    return found


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.append(repr(record.args))
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


@pytest.fixture
def link(tmp_path):
    server = ServerProcess(tmp_path / "root", credentials={AK: SK}, log_level="debug").start()
    proxy = FaultProxy(*server.address)
    try:
        yield server, proxy
    finally:
        proxy.close()
        server.stop()


def test_engine_logs_reprs_errors_events_and_journal(link, tmp_path, chunk_gate):
    server, proxy = link
    handler = _Collect()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    journal = tmp_path / "journal"
    texts: list[str] = []
    explicit = make_token("bkt:explicit.bin", access_key=AK, secret_key=SK)
    expired = make_token(
        "bkt:expired.bin", access_key=AK, secret_key=SK, deadline=int(time.time() * 1000) - 1000
    )
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(2 * MiB))
    engine = Engine(
        EngineConfig(
            journal_dir=journal,
            chunk_size=256 * 1024,
            backoff_base=0.05,
            backoff_cap=0.2,
            stall_timeout=2,
            retries=3,
            access_key=AK,
            secret_key=SK,
        )
    )
    events: list[str] = []
    engine.subscribe(lambda ev: events.append(repr(ev)))
    try:
        # connection cuts on the way, so retries and their messages happen
        proxy.add(Fault(cut_after=50_000), Fault(), Fault(swallow_after=300_000))
        tasks = [
            engine.submit(
                str(src),
                proxy.url,
                protocol="wcs-append",
                access_key=AK,
                secret_key=SK,
                scope="bkt",
                key="derived.bin",
            ),
            engine.submit(str(src), proxy.url, protocol="wcs-append", token=explicit),
            engine.submit(
                str(src),
                proxy.url,
                protocol="wcs-append",
                access_key=AK,
                secret_key=WRONG_SK,
                scope="bkt",
                key="forged.bin",
            ),
            engine.submit(str(src), proxy.url, protocol="wcs-append", token=expired),
            engine.submit(
                str(src),
                proxy.url + "/upload",
                filename="hdr.bin",
                headers={"Authorization": f"Bearer {BEARER}"},
                fields={"token": FIELD_SECRET, "who": "me"},
            ),
        ]
        snaps = [t.wait(60) for t in tasks]
        assert [s.state.value for s in snaps] == ["done", "done", "failed", "failed", "done"], [
            (s.state.value, str(s.error)) for s in snaps
        ]
        assert "401" in str(snaps[2].error) and "401" in str(snaps[3].error)
        for task, snap in zip(tasks, snaps, strict=True):
            texts += [repr(task), str(task), repr(snap), str(snap), str(snap.error), repr(snap.error)]
            try:
                task.wait(1, raise_on_error=True)
            except Exception as exc:  # noqa: BLE001 - its text is what is checked
                texts += [str(exc), repr(exc)]
        # a paused task leaves a journal entry: it must hold nothing secret either
        slow_link = FaultProxy(*server.address, default=Fault(rate=1 * MiB))  # fresh, slow connections
        explicit_slow = make_token("bkt:explicit-slow.bin", access_key=AK, secret_key=SK)
        # one gate for each: its first chunk, then held, so neither finishes before its pause
        gate, gate_wcs = chunk_gate(slow_link.url, passes=1), chunk_gate(slow_link.url, passes=1)
        try:
            slow = engine.submit(
                str(src),
                gate.upload_url,
                filename="paused.bin",
                headers={"X-Api-Key": BEARER, "Cookie": f"s={BEARER}"},
                fields={"password": FIELD_SECRET},
            )
            slow_wcs = engine.submit(str(src), gate_wcs.url, protocol="wcs-append", token=explicit_slow)
            # each paused as soon as its chunk is in (a held request would time out into retries)
            settled = pause_each_when([slow, slow_wcs], lambda snap: snap.acked >= 256 * 1024)
            assert [snap.state.value for snap in settled] == ["paused", "paused"]
        finally:
            slow_link.close()
        texts += [repr(engine), repr(engine.config), str(engine.config), repr(slow), repr(slow_wcs)]
        journal_files = sorted(p for p in journal.rglob("*") if p.is_file())
        assert {slow.id, slow_wcs.id} <= {p.stem for p in journal_files if p.suffix == ".json"}
        for path in journal_files:
            texts.append(path.read_text("utf-8", "replace"))
        engine.flush_events()
    finally:
        engine.shutdown(wait=True, timeout=10)
        root.removeHandler(handler)
        root.setLevel(old_level)
    texts += events + handler.lines
    # plain HTTP goes on the engine's own connections (engine/wire.py), TLS and proxies on httpx
    assert any(
        line.startswith(("httpx DEBUG", "httpcore", "nbupload.engine.wire DEBUG")) for line in handler.lines
    ), "no DEBUG log captured"
    everything = "\n".join(texts)
    secrets_ = (explicit, expired, explicit_slow, explicit.split(":")[1], explicit_slow.split(":")[1])
    assert not leaks(everything, secrets_), leaks(everything, secrets_)
    server_log = server.log_text()
    assert "DEBUG" in server_log
    assert not leaks(server_log, (explicit, expired)), leaks(server_log, (explicit, expired))


def test_cli_output_and_journal(link, tmp_path, chunk_gate):
    """``nbupload put`` with --sk on the command line, killed mid-upload: its output, the
    journal and ``nbupload ls --json`` hold no secret; ``resume`` finishes with the key from
    the environment and prints none either."""
    server, proxy = link
    proxy.default = Fault(rate=1 * MiB)
    src = tmp_path / "cli.bin"
    src.write_bytes(os.urandom(3 * MiB))
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBUPLOAD_")}
    env.update(NBUPLOAD_HOME=str(home), PYTHONPATH=str(REPO))

    def cli(*args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "nbupload", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, **kw},
            cwd=REPO,
        )

    gate = chunk_gate(proxy.url, passes=2)  # two chunks, then held: unfinished at the kill
    put = cli(
        "put",
        str(src),
        gate.url,
        "-p",
        "wcs-append",
        "--ak",
        AK,
        "--sk",
        SK,
        "--scope",
        "bkt",
        "--key",
        "cli.bin",
        "--chunk-size",
        "256KiB",
        "--header",
        f"Authorization: Bearer {BEARER}",
    )

    def acked() -> int:
        entries = list((home / "tasks").glob("*.json")) if (home / "tasks").is_dir() else []
        return int(json.loads(entries[0].read_text()).get("acked", 0)) if entries else 0

    try:
        wait_for(lambda: acked() >= 512 * 1024, timeout=60)
        put.kill()
        out, err = put.communicate(timeout=10)
    finally:
        if put.poll() is None:
            put.kill()
    texts = [out, err]
    texts += [p.read_text("utf-8", "replace") for p in (home / "tasks").rglob("*") if p.is_file()]
    ls = cli("ls", "--json")
    texts += list(ls.communicate(timeout=30))
    proxy.default = Fault()
    gate.open()
    resume = cli(
        "resume",
        "--all",
        "--header",
        f"Authorization: Bearer {BEARER}",
        NBUPLOAD_ACCESS_KEY=AK,
        NBUPLOAD_SECRET_KEY=SK,
    )
    rout, rerr = resume.communicate(timeout=60)
    assert resume.returncode == 0, rerr
    texts += [rout, rerr]
    assert (server.root / "bkt" / "cli.bin").read_bytes() == src.read_bytes()
    everything = "\n".join(texts)
    assert "Traceback" not in everything
    assert not leaks(everything), leaks(everything)


_KERNEL_CODE = r"""
import json, time, ipywidgets
from nbupload.ipython.extension import _SESSIONS
session = next(iter(_SESSIONS.values()))
panel = session.get_panel()
form = panel.form
def start(path, ak, sk, scope):
    form.path.value = path
    form.url.value = URL
    form.protocol.value = "wcs-append"
    form.access_key.value = ak
    form.secret_key.value = sk  # as typed in the browser
    form.scope.value = scope
    form.start.click()
start(GOOD_SRC, AK, SK, "bkt:panel-good.bin")
start(BAD_SRC, AK, WRONG_SK, "bkt:panel-bad.bin")
engine = session.engine if hasattr(session, "engine") else None
deadline = time.time() + 60
from nbupload.api import get_engine
busy = ("queued", "connecting", "uploading")
while time.time() < deadline and any(t.state.value in busy for t in get_engine().tasks()):
    time.sleep(0.1)
session.pump.flush() if hasattr(session, "pump") else None
panel.refresh()
print("STATES", [t.state.value for t in get_engine().tasks()])
states = {}
for key, widget in list(ipywidgets.Widget._active_widgets.items()):
    try:
        states[key] = widget.get_state()
    except Exception as exc:
        states[key] = repr(exc)
print("WIDGETSTATE", json.dumps(states, default=repr))
print("MESSAGE", form.message.value)
"""


def test_notebook_widget_state_and_outputs(link, tmp_path):
    """A real kernel: the panel's form gets a secret key (as if typed), starts one good and
    one forged upload; afterwards no widget's state and no output holds a secret."""
    from jupyter_client import KernelManager

    server, _ = link
    good, bad = tmp_path / "panel-good.bin", tmp_path / "panel-bad.bin"
    good.write_bytes(os.urandom(300_000))
    bad.write_bytes(os.urandom(1000))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBUPLOAD_")}
    env.update(NBUPLOAD_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO))
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(REPO))
    outputs: list[str] = []
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        prelude = (
            f"URL = {server.url!r}\nAK = {AK!r}\nSK = {SK!r}\nWRONG_SK = {WRONG_SK!r}\n"
            f"GOOD_SRC = {str(good)!r}\nBAD_SRC = {str(bad)!r}\n"
        )
        for code in ("%load_ext nbupload", prelude + _KERNEL_CODE, "%upload list"):
            msg_id = kc.execute(code)
            while True:
                msg = kc.get_iopub_msg(timeout=90)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "status" and content["execution_state"] == "idle":
                    break
                if kind == "stream":
                    outputs.append(content["text"])
                elif kind in ("display_data", "execute_result"):
                    outputs.append(json.dumps(content.get("data", {})))
                elif kind == "error":
                    outputs.append("\n".join(content["traceback"]))
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
    text = "\n".join(outputs)
    assert "WIDGETSTATE" in text and "STATES" in text, text[-2000:]
    assert "'done'" in text.split("STATES", 1)[1].split("\n", 1)[0], text
    assert (server.root / "bkt" / "panel-good.bin").read_bytes() == good.read_bytes()
    widget_state = text.split("WIDGETSTATE", 1)[1].split("\n", 1)[0]
    assert '"PasswordModel"' in widget_state and "panel-bad.bin" in widget_state  # the form and the rows
    assert not leaks(widget_state), f"secret in the widgets' state: {leaks(widget_state)}"
    assert not leaks(text), leaks(text)
