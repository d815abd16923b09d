"""The state table: the docs print it, the task enforces it, the actions follow it; and the
public exception tree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import nbupload
from nbupload.engine.state import ACTIONS, TRANSITIONS, TaskState, can, describe_transitions
from nbupload.errors import IllegalTransition, NbuploadError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "engine.md"


def test_the_docs_print_the_transition_table():
    text = DOCS.read_text()
    block = re.search(r"<!-- transitions -->\n```\n(.*?)\n```", text, re.DOTALL)
    assert block is not None and block.group(1) == describe_transitions()


def test_every_action_leads_somewhere_legal():
    # resume/retry queue the task again; pause of a queued task pauses it; cancel cancels
    for action, target in (
        ("resume", TaskState.QUEUED),
        ("retry", TaskState.QUEUED),
        ("cancel", TaskState.CANCELLED),
    ):
        for state in ACTIONS[action]:
            assert target in TRANSITIONS[state], (action, state)
    assert can("pause", TaskState.UPLOADING) and not can("pause", TaskState.DONE)
    assert not any(can(a, TaskState.DONE) or can(a, TaskState.CANCELLED) for a in ACTIONS)


def test_a_task_refuses_an_illegal_transition(make_engine):
    engine = make_engine(journal=False)
    task = engine.submit(b"abc", "http://127.0.0.1:9/upload", start=False)
    assert task.state is TaskState.PAUSED
    task.cancel()
    assert task.state is TaskState.CANCELLED
    with pytest.raises(IllegalTransition, match="cancelled -> uploading"):
        task._set_state(TaskState.UPLOADING)
    assert task.state is TaskState.CANCELLED
    task.resume()  # not an action of a cancelled task: nothing happens
    assert task.state is TaskState.CANCELLED


def test_public_errors_share_one_root_and_keep_their_builtin_bases():
    for name in (
        "UploadError",
        "UploadFailed",
        "UploadCancelled",
        "UploadPaused",
        "CredentialsError",
        "TaskLockedError",
        "SourceChangedError",
    ):
        assert issubclass(getattr(nbupload, name), NbuploadError), name
        assert name in nbupload.__all__
    assert issubclass(nbupload.CredentialsError, ValueError)
    assert issubclass(nbupload.TaskLockedError, RuntimeError)


def test_a_bare_bucket_scope_keys_the_object_by_file_name(make_engine, server, tmp_path):
    from tests.support.helpers import CREDENTIALS, make_file, sha256_file

    ((ak, sk),) = CREDENTIALS.items()
    engine = make_engine()
    src = make_file(tmp_path / "named.bin", 300_000)
    snap = engine.submit(
        src, server.url, protocol="wcs-append", access_key=ak, secret_key=sk, scope="bkt"
    ).wait(30, raise_on_error=True)
    assert snap.result["key"] == "named.bin"
    assert sha256_file(server.root / "bkt" / "named.bin") == sha256_file(src)


def test_every_exported_name_resolves():
    for name in nbupload.__all__:
        assert getattr(nbupload, name) is not None, name
