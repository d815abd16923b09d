"""Engine parts without a network: backoff, journal, events, sources, credentials."""

from __future__ import annotations

import io
import json
import os
import random
import threading
import time
import types

import pytest

from nbupload.engine import EngineConfig
from nbupload.engine.config import default_home
from nbupload.engine import credentials
from nbupload.engine.credentials import CredentialsError, WcsCredentials, resolve_wcs_credentials
from nbupload.engine.events import Dispatcher, RateMeter
from nbupload.engine.journal import Journal, TaskLockedError, is_secret_name, split_secrets
from nbupload.engine.retry import Backoff, is_retryable_status, parse_retry_after
from nbupload.engine.sources import FileIdentity, SourceChangedError, open_source, reopen_path
from nbupload.engine.state import TaskEvent, TaskSnapshot, TaskState
from nbupload.protocols import wcs


# ------------------------------------------------------------------ retries
def test_backoff_full_jitter_within_exponential_bounds():
    b = Backoff(retries=10, base=0.5, cap=4.0, deadline=1e9, rng=random.Random(1))
    for n in range(1, 9):
        d = b.next_delay()
        assert d is not None and 0 <= d <= min(4.0, 0.5 * 2 ** (n - 1))


def test_backoff_gives_up_after_retries_and_resets_on_progress():
    b = Backoff(retries=2, base=0.01, cap=0.01, deadline=1e9)
    assert b.next_delay() is not None and b.next_delay() is not None
    assert b.next_delay() is None
    b.progress()
    assert b.failures == 0 and b.next_delay() is not None
    assert b.total_failures == 4


def test_backoff_deadline_bounds_a_streak():
    now = [0.0]
    b = Backoff(retries=100, base=0.01, cap=0.01, deadline=10.0, clock=lambda: now[0])
    assert b.next_delay() is not None
    now[0] = 11.0
    assert b.next_delay() is None


def test_backoff_honours_retry_after():
    b = Backoff(retries=5, base=0.01, cap=10.0, deadline=1e9)
    assert b.next_delay(retry_after=3.0) >= 3.0


@pytest.mark.parametrize(
    "status,expected",
    [
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (507, True),
        (400, False),
        (401, False),
        (413, False),
        (404, False),
        (501, False),
    ],
)
def test_retryable_statuses(status, expected):
    assert is_retryable_status(status) is expected


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    from email.utils import formatdate

    assert 50 < parse_retry_after(formatdate(time.time() + 60, usegmt=True)) <= 61


# ------------------------------------------------------------------ journal
def test_journal_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    j = Journal(tmp_path / "tasks")
    j.write("abc123", {"id": "abc123", "url": "http://x", "acked": 5})
    j.write("abc123", {"id": "abc123", "url": "http://x", "acked": 9})
    assert sorted(p.name for p in (tmp_path / "tasks").iterdir()) == ["abc123.json"]
    entry = j.read("abc123")
    assert entry.acked == 9 and entry.data["version"] == 1
    assert [e.id for e in j.entries()] == ["abc123"]
    j.remove("abc123")
    assert j.read("abc123") is None and list(j.entries()) == []


def test_journal_ignores_garbage_and_rejects_bad_ids(tmp_path):
    j = Journal(tmp_path)
    (tmp_path / "zzz.json").write_text("{not json")
    (tmp_path / "yyy.json").write_text(json.dumps({"id": "other"}))
    assert list(j.entries()) == []
    with pytest.raises(ValueError):
        j.write("../evil", {"id": "../evil"})


def test_task_lock_is_exclusive_between_open_files(tmp_path):
    j = Journal(tmp_path)
    lock = j.lock("t1")
    assert j.is_locked("t1")
    with pytest.raises(TaskLockedError, match="another process"):
        j.lock("t1")
    lock.release()
    assert not j.is_locked("t1")
    again = j.lock("t1")
    again.release(remove=True)
    assert not (tmp_path / "t1.lock").exists()


def test_secret_names_are_split_out():
    kept, secret = split_secrets(
        {"Authorization": "Bearer x", "X-Api-Key": "k", "Accept": "a", "token": "t", "user": "u"}
    )
    assert kept == {"Accept": "a", "user": "u"}
    assert sorted(secret) == ["Authorization", "X-Api-Key", "token"]
    assert is_secret_name("Cookie") and not is_secret_name("x:album")


def test_default_home_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NBUPLOAD_HOME", str(tmp_path))
    assert default_home() == tmp_path
    assert EngineConfig().tasks_dir == tmp_path / "tasks"


def test_engine_config_validates_and_hides_secrets():
    with pytest.raises(ValueError):
        EngineConfig(workers=0)
    with pytest.raises(TypeError, match="unknown engine setting"):
        EngineConfig().with_changes(wrokers=3)
    cfg = EngineConfig(secret_key="hush-hush", token="AK:sig:pol")
    assert "hush-hush" not in repr(cfg) and "sig" not in repr(cfg)


# ------------------------------------------------------------------ events
def _snap(task_id: str, state=TaskState.UPLOADING, acked=0) -> TaskSnapshot:
    return TaskSnapshot(
        id=task_id, name="n", protocol="uploader", url="u", state=state, total=100, acked=acked
    )


def test_dispatcher_coalesces_progress_and_never_drops_states():
    d = Dispatcher(interval=0.1)
    got: list[TaskEvent] = []
    d.subscribe(got.append)
    d.post(TaskEvent("state", _snap("a", TaskState.CONNECTING)))
    start = time.monotonic()
    n = 0
    while n < 200 or time.monotonic() - start < 0.5:  # many posts, however slow the machine
        n += 1
        d.post(TaskEvent("progress", _snap("a", acked=n)))
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    d.post(TaskEvent("state", _snap("a", TaskState.DONE, acked=100)))
    d.flush()
    d.stop()
    progress = [e for e in got if e.kind == "progress"]
    states = [e.snapshot.state for e in got if e.kind == "state"]
    assert states == [TaskState.CONNECTING, TaskState.DONE]
    assert 1 <= len(progress) <= 10 * elapsed + 3  # at most one per 0.1 s interval, not one per post
    assert [e.snapshot.acked for e in progress] == sorted(e.snapshot.acked for e in progress)
    assert got[-1].snapshot.state is TaskState.DONE  # no stale progress after the final state


def test_dispatcher_survives_a_broken_subscriber():
    d = Dispatcher(interval=0.01)
    got = []
    d.subscribe(lambda e: 1 / 0)
    unsub = d.subscribe(got.append)
    d.post(TaskEvent("state", _snap("a")))
    d.flush()
    unsub()
    d.post(TaskEvent("state", _snap("a")))
    d.flush()
    d.stop()
    assert len(got) == 1


def test_rate_meter_smooths_and_estimates():
    now = [0.0]
    m = RateMeter(tau=1.0, clock=lambda: now[0])
    m.reset(0)
    for i in range(1, 11):
        now[0] = i * 0.5
        m.update(i * 500)
    assert 900 < m.rate < 1100
    assert 9 < m.eta(10_000) < 11


# ------------------------------------------------------------------ sources
def test_sources_of_every_kind(tmp_path):
    data = os.urandom(200_000)
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    opened = open_source(p)
    assert opened.persistent and opened.size == len(data) and opened.filename == "f.bin"
    assert opened.source.pread(10, 5) == data[5:15]
    opened.close()
    for obj in (data, bytearray(data), memoryview(data)):
        o = open_source(obj)
        assert not o.persistent and o.source.pread(10, 199_990) == data[199_990:]
    with open(p, "rb") as f:
        o = open_source(f)
        assert o.persistent and o.source.pread(4, 100) == data[100:104]
        o.close()
        assert not f.closed  # the caller's file stays theirs
    o = open_source(io.BytesIO(data))
    assert o.size == len(data) and o.source.pread(3, 3) == data[3:6]
    r, w = os.pipe()
    threading.Thread(target=lambda: (os.write(w, data[:50_000]), os.close(w)), daemon=True).start()
    with os.fdopen(r, "rb") as pipe:
        o = open_source(pipe)
    assert o.size == 50_000 and o.source.pread(5, 0) == data[:5] and not o.persistent
    o.close()

    class Composite:  # the notebook front end's shape: a header plus an array's memory
        def __init__(self, head: bytes, body: bytes) -> None:
            self.head, self.body, self.size = head, memoryview(body), len(head) + len(body)

        def pread(self, n: int, offset: int) -> bytes:
            whole = self.head + bytes(self.body)
            return whole[offset : offset + n]

    o = open_source(Composite(b"HEAD", data[:100]))
    assert o.size == 104 and o.source.pread(6, 2) == b"AD" + data[:4]
    with pytest.raises(TypeError, match="cannot upload a int"):
        open_source(42)
    with pytest.raises(FileNotFoundError, match="no such file"):
        open_source(tmp_path / "missing")


def test_changed_file_is_detected(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"x" * 100)
    ident = FileIdentity.of(os.stat(p))
    reopen_path(str(p), ident).close()
    with open(p, "ab") as f:
        f.write(b"more")
    with pytest.raises(SourceChangedError, match="size 100 -> 104"):
        reopen_path(str(p), ident)
    opened = open_source(p)
    os.utime(p, ns=(1, 1))
    with pytest.raises(SourceChangedError, match="changed since the upload started"):
        opened.check_unchanged()
    opened.close()


# ------------------------------------------------------------------ credentials and hashing
def test_credentials_mint_fresh_tokens_and_hide_the_secret(monkeypatch):
    now = [time.time()]  # the credentials' clock is the test's: a busy machine cannot age the token
    monkeypatch.setattr(credentials, "time", types.SimpleNamespace(time=lambda: now[0]))
    creds = WcsCredentials(scope="bkt:key", access_key="AK", secret_key="SK-secret", ttl=1.0)
    t1 = creds.current()
    policy = wcs.verify_token(t1, {"AK": "SK-secret"}, int(time.time() * 1000))
    assert policy.scope == "bkt:key"
    assert creds.current() == t1  # cached while it has time left
    now[0] += 0.8
    assert creds.current() != t1  # within the renewal margin (a quarter of the ttl): a new one
    assert "SK-secret" not in repr(creds) and t1 not in repr(creds)
    with pytest.raises(CredentialsError, match="missing: secret key"):
        WcsCredentials(scope="b", access_key="AK")
    monkeypatch.setenv("NBUPLOAD_ACCESS_KEY", "AK2")
    monkeypatch.setenv("NBUPLOAD_SECRET_KEY", "SK2")
    c = resolve_wcs_credentials(token=None, access_key=None, secret_key=None, scope="b")
    assert c.access_key == "AK2" and c.current().startswith("AK2:")
    c = resolve_wcs_credentials(token=None, access_key="AK", secret_key="SK", scope="b")
    assert c.access_key == "AK"
    tok = wcs.make_token("AK3", "SK3", wcs.PutPolicy("b3:k", int(time.time() * 1000) + 60_000))
    c = resolve_wcs_credentials(token=tok, access_key=None, secret_key=None, scope=None)
    assert c.current() == tok and c.scope == "b3:k" and not c.refresh()


def test_forked_etag_matches_a_straight_one():
    data = os.urandom(9 << 20)
    h = wcs.EtagHasher()
    h.update(data[: 5 << 20])
    twin = h.copy()
    twin.update(data[5 << 20 :])
    h.update(b"different")
    assert twin.etag() == wcs.etag_of(data)
