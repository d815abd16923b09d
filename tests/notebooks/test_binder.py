"""binder/ really builds: a fresh virtualenv set up the way mybinder.org (repo2docker) does it,
then the quickstart executed, top to bottom, in a kernel of that environment.

repo2docker installs ``binder/requirements.txt`` and then runs ``binder/postBuild`` from the
repository root; this test does the same with a new virtualenv first on ``PATH`` (pip's cache
is used, so only the first run downloads). The quickstart runs with nbclient from inside that
environment, so its kernel imports the installed nbupload, not this checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

_EXECUTE = textwrap.dedent(
    """
    import json, sys
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(sys.argv[1], as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": sys.argv[2]}}).execute()
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text") or out.get("data", {}).get("text/plain", ""))
    json.dump(texts, sys.stdout)
    """
)


def _run(args: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 600) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def test_binder_environment_builds_and_runs_the_quickstart(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bindir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "NBUPLOAD_HOME")}
    env.update(
        PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        # a private Jupyter setup: no user or system kernelspec may stand in for this environment's
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        JUPYTER_PATH="",
        IPYTHONDIR=str(tmp_path / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
    )

    # 1. what repo2docker does: requirements.txt, then postBuild from the repository root
    _run(
        [str(bindir / "python"), "-m", "pip", "install", "--quiet", "-r", str(BINDER / "requirements.txt")],
        env=env,
        cwd=ROOT,
    )
    _run(["bash", str(BINDER / "postBuild")], env=env, cwd=ROOT)

    # the package comes from the environment, not from this checkout
    where = _run(
        [str(bindir / "python"), "-c", "import nbupload, pathlib; print(pathlib.Path(nbupload.__file__))"],
        env=env,
        cwd=tmp_path,
    ).strip()
    assert Path(where).is_relative_to(venv), where
    _run([str(bindir / "jupyter"), "lab", "--version"], env=env, cwd=tmp_path)

    # 2. the quickstart, top to bottom, in a kernel of that environment
    script = tmp_path / "execute.py"
    script.write_text(_EXECUTE)
    notebook = ROOT / "notebooks" / "quickstart.ipynb"
    out = _run(
        [str(bindir / "python"), str(script), str(notebook), str(notebook.parent)], env=env, cwd=tmp_path
    )
    text = "\n".join(json.loads(out))
    assert "nbupload reference server at http://127.0.0.1:" in text
    assert "measurements.csv [" in text and "100%|####################| 708 KiB/708 KiB done" in text
    assert "measurements.parquet done" in text
    assert "paused with part of the file on the server: True" in text
    assert "done True" in text  # resumed, and the server holds the same bytes
    assert "failed 4002 413" in text
    assert "'verified': True" in text and "724820 True" in text
    assert "stopped" in text
