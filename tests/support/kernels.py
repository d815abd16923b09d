"""A kernel environment with ipykernel 6, for the live-update checks under the older kernel.

A virtualenv (``--system-site-packages``) gets ``pip install 'ipykernel>=6.29,<7'`` (from
pip's cache when it can); the rest (ipywidgets, httpx, this checkout ...) comes from the test
environment through a ``.pth`` file, which Python reads *after* the virtualenv's own
site-packages, so the kernel imports ipykernel 6. (With the test environment on
``PYTHONPATH`` instead, it came first and the kernel imported ipykernel 7 again.)
"""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

__all__ = ["REPO", "kernel_python_with_ipykernel6"]

REPO = Path(__file__).resolve().parents[2]


def kernel_python_with_ipykernel6(base: Path) -> str:
    """A virtualenv's python with ipykernel 6 first on its path, this environment after it."""
    import site

    env_dir = base
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    py = str(env_dir / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", "ipykernel>=6.29,<7"], check=True, timeout=600)
    own = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # this checkout and this environment's packages, after the virtualenv's own
    Path(own, "nbupload-test-env.pth").write_text("\n".join([str(REPO), *site.getsitepackages()]) + "\n")
    version = subprocess.run(
        [py, "-c", "import ipykernel, nbupload, ipywidgets; print(ipykernel.__version__)"],
        check=True,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    ).stdout.strip()
    assert version.startswith("6."), version
    return py
