"""The README is true of the code: its marked commands are intact and its tour runs.

The ``python`` block runs as a script, the ``ipython`` block in a real IPython shell and the
``console`` block in bash, each in a temporary directory with a private ``NBUPLOAD_HOME``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent


def _block(lang: str) -> str:
    found = re.findall(rf"^```{lang}\n(.*?)^```", README, flags=re.S | re.M)
    assert len(found) == 1, f"expected one ```{lang} block in README.md, found {len(found)}"
    return found[0]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        NBUPLOAD_HOME=str(tmp_path / "home"),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        IPYTHONDIR=str(tmp_path / "ipython"),
    )
    for name in ("NBUPLOAD_ACCESS_KEY", "NBUPLOAD_SECRET_KEY", "NBUPLOAD_TOKEN"):
        env.pop(name, None)
    return env


def _run(args: list[str], tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        args, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc


def test_marked_commands_are_intact() -> None:
    assert "<!-- demo-command -->\n```\nmake demo\n```\n<!-- /demo-command -->" in README
    assert "<!-- test-command -->\n```\nmake test\n```\n<!-- /test-command -->" in README


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize(
    "doc",
    [
        "README.md",
        "CONTRIBUTING.md",
        "CHANGELOG.md",
        "docs/index.md",
        "docs/errors.md",
        "docs/troubleshooting.md",
    ],
)
def test_links_point_at_files_and_headings_that_exist(doc: str) -> None:
    source = ROOT / doc
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", source.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://")):
            continue
        path = (source.parent / target).resolve() if target else source
        assert path.exists(), f"{doc} links to {target}, which does not exist"
        if anchor and path.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), flags=re.M)
            assert anchor in {_anchor(h) for h in headings}, (
                f"{doc} links to {target}#{anchor}: no such heading"
            )


def test_python_api_block_runs_and_prints_what_its_comments_say(tmp_path: Path) -> None:
    script = tmp_path / "readme_api.py"
    script.write_text(_block("python"))
    out = _run([sys.executable, str(script)], tmp_path).stdout.splitlines()
    assert out == ["done resumable", "True", "['data.bin', 'note.txt', 'data.bin']"]
    assert (tmp_path / "data.bin").stat().st_size == 8 << 20


def test_magics_block_runs_in_ipython(tmp_path: Path) -> None:
    # the files and the DataFrame the block refers to
    prelude = textwrap.dedent(
        """
        import os
        import pandas as pd
        df = pd.DataFrame({"x": range(1000), "y": [i * 0.5 for i in range(1000)]})
        df.to_csv("data.csv", index=False)
        with open("big.bin", "wb") as f:
            f.write(os.urandom(3 << 20))
        """
    )
    driver = textwrap.dedent(
        """
        import sys
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        for cell in (sys.argv[1], sys.argv[2]):
            result = shell.run_cell(open(cell).read())
            if not result.success:
                sys.exit(f"cell failed: {result.error_before_exec or result.error_in_exec!r}")
        import nbupload
        for task in nbupload.tasks():
            task.wait(30)
        print("STATES", sorted(t.state.value for t in nbupload.tasks()))
        root = shell.user_ns["_nbupload_root"]
        files = [p.relative_to(root) for p in root.rglob("*") if p.is_file()]
        print("STORED", sorted(str(f) for f in files if not f.parts[0].startswith(".")))
        """
    )
    (tmp_path / "prelude.py").write_text(prelude)
    # the server's root is a temp dir the session knows; keep a handle on it for the check
    block = _block("ipython") + textwrap.dedent(
        """
        from nbupload.ipython.extension import current_session
        _nbupload_root = current_session(get_ipython()).server.handle.root
        """
    )
    (tmp_path / "block.ipy").write_text(block)
    (tmp_path / "driver.py").write_text(driver)
    out = _run([sys.executable, "driver.py", "prelude.py", "block.ipy"], tmp_path).stdout
    assert "nbupload reference server at http://127.0.0.1:" in out
    assert "WCS token for scope 'demo:results.csv'" in out
    states = re.search(r"^STATES (.*)$", out, re.M)
    assert states and states.group(1) == "['done', 'done', 'done', 'done']", out
    stored = re.search(r"^STORED (.*)$", out, re.M)
    assert stored and stored.group(1) == "['big.bin', 'data.csv', 'demo/results.csv', 'results.parquet']", out


def test_console_block_runs_in_bash(tmp_path: Path) -> None:
    lines = [line[2:] for line in _block("console").splitlines() if line.startswith("$ ")]
    script = []
    for line in lines:
        if line.startswith("nbupload serve"):
            # the README's fixed port, made ephemeral: the server binds port 0 and says which
            # port it got; wait for that (a loaded machine imports slowly), stop it by PID
            assert "--port 8765" in line and line.endswith("&")
            served = line.replace("--port 8765", "--port 0")[:-1].rstrip()
            script += [
                f"{served} > serve.log 2>&1 &",
                "SERVER=$!",
                "trap 'kill $SERVER' EXIT",
                "for i in $(seq 1200); do grep -q 'serving on' serve.log && break; "
                "kill -0 $SERVER || { cat serve.log; exit 1; }; sleep 0.1; done",
                "PORT=$(grep -o 'serving on http://127.0.0.1:[0-9]*' serve.log | grep -o '[0-9]*$')",
            ]
        else:
            script.append(line.replace("8765", "$PORT"))
    (tmp_path / "data.bin").write_bytes(os.urandom(3 << 20))
    (tmp_path / "block.sh").write_text("set -euo pipefail\n" + "\n".join(script) + "\n")
    out = _run(["bash", "block.sh"], tmp_path).stdout
    data = (tmp_path / "data.bin").read_bytes()
    assert (tmp_path / "uploads" / "data.bin").read_bytes() == data
    assert (tmp_path / "uploads" / "bucket" / "runs" / "data.bin").read_bytes() == data
    assert "no unfinished uploads" in out
    assert re.search(r"^AK:[\w=-]+:[\w=-]+$", out, re.M)  # the token
    assert re.search(r"^[\w-]{28}$", out, re.M)  # the etag line


@pytest.mark.parametrize("name", ["quickstart", "push-dataset", "resume-after-restart"])
def test_readme_lists_each_notebook(name: str) -> None:
    assert f"(notebooks/{name}.ipynb)" in README
    assert (ROOT / "notebooks" / f"{name}.ipynb").is_file()
