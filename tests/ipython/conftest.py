"""A real IPython shell with nbupload loaded, and the embedded reference server.

NBUPLOAD_HOME points at a temporary directory before the process-wide engine exists, so
the journal of these tests never touches the user's.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

_HOME = tempfile.mkdtemp(prefix="nbupload-ipython-tests-")
os.environ["NBUPLOAD_HOME"] = _HOME
atexit.register(shutil.rmtree, _HOME, True)


@pytest.fixture(scope="session")
def ip() -> Any:
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    assert shell is not None
    return shell


@pytest.fixture
def shell(ip: Any) -> Iterator[Any]:
    """The shell with the extension loaded; unloaded (and its server stopped) afterwards."""
    ip.run_line_magic("load_ext", "nbupload")
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "nbupload")


def _run(ip: Any, line: str) -> Any:
    """Run a cell; raise what it raised (UsageError included)."""
    result = ip.run_cell(line, store_history=False)
    if result.error_before_exec is not None:
        raise result.error_before_exec
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return result.result


@pytest.fixture(name="run")
def run_fixture() -> Any:
    return _run
