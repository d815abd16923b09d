"""The journal on disk, secret splitting and the engine configuration, no network."""

from __future__ import annotations

import json

import pytest

from nbupload.engine import EngineConfig
from nbupload.engine.config import default_home
from nbupload.engine.journal import Journal, TaskLockedError, is_secret_name, split_secrets


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
