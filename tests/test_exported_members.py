"""The public surface is pinned: ``nbupload.__all__`` is what the docs list, every name in it
resolves, type information ships, and ``import nbupload`` stays light.

Like httpx's tests/test_exported_members.py: a name added to or dropped from the package
without the docs (or the other way round) fails here, not in a user's editor.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import nbupload

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "index.md"


def documented_names() -> list[str]:
    """The names of the "Public API" list in docs/index.md, in the order written."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(r"^## Public API\n(.*?)(?=^## )", text, flags=re.M | re.S)
    assert match, "docs/index.md has no '## Public API' section"
    names: list[str] = []
    for line in match.group(1).splitlines():
        if line.startswith("- "):
            head = line[2:].split(":", 1)[0]
            names += re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", head)
    return names


def test_all_is_what_the_docs_list() -> None:
    documented = documented_names()
    assert len(documented) == len(set(documented)), "a name is listed twice in docs/index.md"
    assert sorted(documented) == sorted(nbupload.__all__)


def test_all_is_a_sorted_literal() -> None:
    """Written out, not computed, so that editors and type checkers read it."""
    tree = ast.parse((ROOT / "nbupload" / "__init__.py").read_text(encoding="utf-8"))
    values = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    ]
    assert len(values) == 1
    literal = ast.literal_eval(values[0])
    assert isinstance(literal, list)
    assert literal == nbupload.__all__ == sorted(nbupload.__all__)


def test_every_name_resolves() -> None:
    for name in nbupload.__all__:
        assert getattr(nbupload, name) is not None, name
    assert sorted(dir(nbupload)) == sorted(nbupload.__all__)


def test_lazy_names_are_all_public_and_type_checked() -> None:
    """Every lazily loaded name is in ``__all__`` and imported under ``TYPE_CHECKING``."""
    lazy = set(nbupload._LAZY)
    assert lazy <= set(nbupload.__all__)
    defined_here = {"__version__", "load_ipython_extension", "unload_ipython_extension"}
    assert set(nbupload.__all__) - lazy == defined_here
    tree = ast.parse((ROOT / "nbupload" / "__init__.py").read_text(encoding="utf-8"))
    checked: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                checked |= {alias.asname or alias.name for alias in stmt.names}
                for alias in stmt.names:
                    # the module TYPE_CHECKING names is the one the lazy loader imports
                    assert nbupload._LAZY[alias.name] == "." + (stmt.module or ""), alias.name
    assert checked == lazy


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = nbupload.no_such_name


def test_no_submodule_hides_a_public_name() -> None:
    """Importing a submodule binds it on the package under its own name: a public function
    named like its module (``nbupload.follow`` once lived in ``nbupload/follow.py``) would be
    replaced by the module after any import of it. Import every submodule, then check."""
    code = (
        "import importlib, pkgutil, types, nbupload\n"
        "for m in pkgutil.walk_packages(nbupload.__path__, 'nbupload.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [n for n in nbupload.__all__ if isinstance(getattr(nbupload, n), types.ModuleType)]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)


def test_py_typed_ships() -> None:
    assert (ROOT / "nbupload" / "py.typed").is_file()
    assert (Path(nbupload.__file__).parent / "py.typed").is_file()


def test_import_stays_lazy() -> None:
    """``import nbupload`` (and ``dir()``) pull in none of the heavy dependencies."""
    code = (
        "import json, sys\n"
        "import nbupload\n"
        "dir(nbupload); nbupload.__all__; nbupload.__version__\n"
        "heavy = ('httpx', 'ipywidgets', 'uvicorn', 'IPython', 'anywidget', 'numpy', 'pandas')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(out.stdout) == []


def test_every_public_exception_is_an_nbupload_error() -> None:
    """One root: ``except nbupload.NbuploadError`` catches every exception the package exports;
    the append errors stay ``OSError`` for code that catches them as a failing file."""
    exceptions = [
        getattr(nbupload, n)
        for n in nbupload.__all__
        if isinstance(getattr(nbupload, n), type) and issubclass(getattr(nbupload, n), BaseException)
    ]
    assert {e.__name__ for e in exceptions} >= {"AppendStreamError", "BatchError", "FollowError"}
    for exc in exceptions:
        assert issubclass(exc, nbupload.NbuploadError), exc.__name__
    for name in ("AppendStreamError", "AppendConflict", "AppendHashMismatch", "FollowError"):
        assert issubclass(getattr(nbupload, name), OSError), name
