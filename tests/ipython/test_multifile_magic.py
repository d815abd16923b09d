"""``%upload --file FIELD=PATH ...``: a multi-file session from a real IPython shell."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from nbupload.engine.state import TaskState
from nbupload.ipython.extension import current_session
from nbupload.server import start_server
from tests.support.helpers import make_file, sha256_file
from tests.support.ipyproc import first_kernel, ipython, kill_once_started, output_of


@pytest.fixture
def demo(shell, run, tmp_path, capsys):
    root = tmp_path / "srv"
    run(shell, f"%upload server start --root {root}")
    capsys.readouterr()
    session = current_session(shell)
    assert session.server is not None
    return session, root


def test_magic_file_options_upload_one_session(demo, shell, run, tmp_path):
    session, root = demo
    a = make_file(tmp_path / "a.bin", 500_000, seed=1)
    b = make_file(tmp_path / "b.csv", 0)
    task = run(
        shell, f"%upload --file photo={a} --file table={b} --field user=ann --chunk-size 128KiB --wait -o"
    )
    assert task.state is TaskState.DONE, task.error
    assert task.total == 500_000 and len(task.spec.files) == 2
    assert sha256_file(root / "a.bin") == sha256_file(a)
    assert sha256_file(root / "b.csv") == sha256_file(b)
    assert set(task.result["files"]) == {"photo", "table"}
    # with the URL given explicitly, as the only positional
    c = make_file(tmp_path / "c.bin", 1_000, seed=3)
    again = run(shell, f"%upload --file c={c} {session.server.upload_url} --wait -o")
    assert again.state is TaskState.DONE and (root / "c.bin").read_bytes() == c.read_bytes()


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("%upload --file a={a} --file a={a}", "given twice"),
        ("%upload --file a={missing}", "field 'a': no such file"),
        ("%upload --file 'a b={a}'", "not a usable form field name"),
        ("%upload --file a={a} -p wcs-append", "wcs-append uploads one object per task"),
        ("%upload --file a={a} --var x --as x.csv", "--var and --file"),
    ],
)
def test_magic_file_errors_are_usage_errors(demo, shell, run, tmp_path, line, match):
    (tmp_path / "a").write_bytes(b"x")
    with pytest.raises(UsageError, match=match):
        run(shell, line.format(a=tmp_path / "a", missing=tmp_path / "nope"))


def test_a_session_started_by_the_magic_resumes_after_the_kernel_is_killed(tmp_path, chunk_gate):
    home = tmp_path / "home"
    a = make_file(tmp_path / "a.bin", 600_000, seed=1)
    b = make_file(tmp_path / "b.bin", 300_000, seed=2)
    with start_server(root=tmp_path / "srv", throttle=256 * 1024) as server:
        gate = chunk_gate(server.url, passes=1)  # one chunk, then held: unfinished at the kill
        first = first_kernel(
            f"--file a={a} --file b={b} {gate.upload_url} --chunk-size 64KiB --chunk-max 64KiB -o -q",
            home,
            tmp_path,
        )
        task_id = kill_once_started(first, timeout=120)
        gate.open()
        second = ipython(
            "%load_ext nbupload\n"
            "%upload resume all\n"
            "import nbupload\n"
            "for t in nbupload.tasks():\n"
            "    print('FINAL', t.id, t.wait(60).state.value, sorted(t.result['files']))\n",
            home,
            tmp_path,
            "second",
        )
        out = output_of(second, timeout=120)
        assert f"FINAL {task_id} done ['a', 'b']" in out, out
        assert sha256_file(tmp_path / "srv" / "a.bin") == sha256_file(a)
        assert sha256_file(tmp_path / "srv" / "b.bin") == sha256_file(b)
        stats = server.stats()["uploader"]
        assert stats["duplicate_bytes"] == 0 and stats["bytes"] - 900_000 <= 4 * (64 << 10)
