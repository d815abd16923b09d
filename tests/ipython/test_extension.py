"""Loading, reloading and unloading the extension; %config Uploader; usage errors."""

from __future__ import annotations

import threading

import pytest
from IPython.core.error import UsageError

from nbupload.ipython.config import Uploader
from nbupload.ipython.extension import current_session
from tests.support.helpers import make_file, wait_for


def upload_magics(ip):
    return [m for m in ip.magics_manager.registry.values() if type(m).__name__ == "UploadMagics"]


def uploaders(ip):
    return [c for c in ip.configurables if isinstance(c, Uploader)]


def test_load_reload_unload_leave_no_duplicates(ip):
    threads_before = {t.ident for t in threading.enumerate()}
    ip.run_line_magic("load_ext", "nbupload")
    ip.run_line_magic("load_ext", "nbupload")  # a second load is a no-op
    assert "upload" in ip.magics_manager.magics["line"]
    assert len(upload_magics(ip)) == 1 and len(uploaders(ip)) == 1
    first = current_session(ip)
    _ = first.engine  # subscribe once
    subscribers = len(first.engine._dispatcher._subs)
    ip.run_line_magic("reload_ext", "nbupload")
    second = current_session(ip)
    assert second is not first
    assert len(upload_magics(ip)) == 1 and len(uploaders(ip)) == 1
    _ = second.engine
    assert len(second.engine._dispatcher._subs) == subscribers
    ip.run_line_magic("unload_ext", "nbupload")
    assert current_session(ip) is None
    assert "upload" not in ip.magics_manager.magics["line"]
    assert upload_magics(ip) == [] and uploaders(ip) == []
    assert len(first.engine._dispatcher._subs) == subscribers - 1
    new_threads = [t for t in threading.enumerate() if t.ident not in threads_before]
    # only the engine's own (process-wide) threads may remain, nothing per load
    assert all(t.name.startswith("nbupload-engine") or "nbupload" in t.name for t in new_threads), new_threads


def test_autoload_through_interactive_shell_app_extensions(tmp_path):
    import subprocess
    import sys

    profile = tmp_path / "ipython"
    code = (
        "ip = get_ipython()\n"
        "print('LOADED' if 'upload' in ip.magics_manager.magics['line'] else 'MISSING')\n"
        "print('CHUNK', [c for c in ip.configurables if type(c).__name__ == 'Uploader'][0].chunk_size)\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "IPython",
            "--quick",
            "--no-banner",
            "--colors=nocolor",
            "--InteractiveShellApp.extensions=['nbupload']",
            "--Uploader.chunk_size=1048576",
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**__import__("os").environ, "IPYTHONDIR": str(profile), "NBUPLOAD_HOME": str(tmp_path / "home")},
    )
    lines = out.stdout.splitlines()
    assert "LOADED" in lines, out.stdout + out.stderr
    assert "CHUNK 1048576" in lines


def test_config_magic_sets_and_forwards_to_the_engine(shell, capsys, caplog, run):
    session = current_session(shell)
    engine = session.engine
    run(shell, "%config Uploader.chunk_size = 8 * 2**20")
    assert session.config.chunk_size == 8 * 2**20 and engine.config.chunk_size == 8 * 2**20
    run(shell, "%config Uploader.stall_timeout = 12.5")
    assert engine.config.stall_timeout == 12.5
    run(shell, "%config Uploader")
    out = capsys.readouterr().out
    assert "Uploader(Configurable) options" in out and "Uploader.chunk_size=<Int>" in out
    run(shell, "%config Uploader.workers = 0")  # IPython logs the refusal
    assert "Uploader.workers must be at least 1" in caplog.text
    assert session.config.workers == 4 and engine.config.workers == 4
    run(shell, "%config Uploader.workers = 4")
    run(shell, "%config Uploader.chunk_size = 4 * 2**20")


def test_config_max_rate_reaches_the_engine_and_zero_lifts_it(shell, caplog, run):
    engine = current_session(shell).engine
    run(shell, "%config Uploader.max_rate = 5e6")
    assert engine.config.max_rate == 5e6
    run(shell, "%config Uploader.max_rate = -1")  # refused: the cap stays
    assert "Uploader.max_rate must not be negative" in caplog.text and engine.config.max_rate == 5e6
    run(shell, "%config Uploader.max_rate = 0")
    assert engine.config.max_rate is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%upload", "needs arguments"),
        ("%upload --bogus x", "unrecognized arguments: --bogus"),
        ("%upload 'unclosed", "No closing quotation"),
        ("%upload /definitely/not/here http://127.0.0.1:9/u", "no such file: /definitely/not/here"),
        ("%upload pause", "the following arguments are required: ID|all"),
        ("%upload pause nosuchtask", "no task 'nosuchtask'"),
        ("%upload server frobnicate", "invalid choice: 'frobnicate'"),
        ("%upload --var nope http://127.0.0.1:9/u --as x.csv", "no variable named 'nope'"),
        ("%upload --var x http://127.0.0.1:9/u", "--var needs --as"),
        ("%upload f http://127.0.0.1:9/u --chunk-size 12 parsecs", "unrecognized arguments: parsecs"),
        ("%upload f http://127.0.0.1:9/u --chunk-size 4XB", "invalid size '4XB'"),
    ],
)
def test_bad_arguments_are_short_usage_errors(shell, line, message, run):
    shell.user_ns["x"] = b"abc"
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("|", r"\|")):
        run(shell, line)


def test_usage_error_shows_no_traceback(shell, capsys):
    shell.run_cell("%upload --bogus")
    err = capsys.readouterr().err
    assert "UsageError" in err and "unrecognized arguments" in err and "Traceback" not in err


def test_help_is_argparse_style(shell, capsys, run):
    shell.run_cell("%upload?")
    help_text = shell.magics_manager.magics["line"]["upload"].__doc__
    assert "%upload FILE [URL] [options]" in help_text and "--chunk-size SIZE" in help_text
    assert "%upload server start|stop|status" in help_text
    run(shell, "%upload server --help")
    out = capsys.readouterr().out
    assert "usage: %upload server" in out and "--throttle RATE" in out


def test_dollar_and_brace_expansion(shell, tmp_path, run):
    shell.user_ns["where"] = str(tmp_path / "missing")
    with pytest.raises(UsageError, match=f"no such file: {tmp_path}/missing.bin"):
        run(shell, "%upload {where + '.bin'} http://127.0.0.1:9/u")
    with pytest.raises(UsageError, match=f"no such file: {tmp_path}/missing"):
        run(shell, "%upload $where http://127.0.0.1:9/u")


def test_no_url_anywhere_is_explained(shell, tmp_path, run):
    f = tmp_path / "a.bin"
    f.write_bytes(b"x")
    with pytest.raises(UsageError, match="no URL"):
        run(shell, f"%upload {f}")


def test_unload_stops_the_server_quietly_and_says_what_it_paused(ip, tmp_path, capfd):
    from nbupload.engine.state import TaskState as _TaskState

    ip.run_line_magic("load_ext", "nbupload")
    try:
        ip.run_line_magic("upload", f"server start --root {tmp_path / 'srv'} --throttle 64KiB")
        # 8 MiB through the 64 KiB/s throttle: two minutes to go once the first chunk is in. The
        # upload must go to the demo server's own URL (the unload pauses only those), so no gate
        # (tests/support/gate.py) can stand in front: the size is what keeps it unfinished.
        src = make_file(tmp_path / "slow.bin", 8 << 20)
        task = ip.run_line_magic("upload", f"{src} --chunk-size 32KiB -q -o")
        wait_for(lambda: task.snapshot().acked > 0, what="the first chunk acknowledged")
    finally:
        ip.run_line_magic("unload_ext", "nbupload")
    out, err = capfd.readouterr()
    assert f"nbupload unloaded: stopped the demo server, pausing 1 upload to it ({task.id})" in out, out
    assert task.state is _TaskState.PAUSED
    task.cancel()  # leave nothing for `%upload resume all` in later tests
    assert "Traceback" not in err and "CancelledError" not in err, err
