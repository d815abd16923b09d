"""``expand_paths``: files, folders and globs into (path, relative name) pairs."""

from __future__ import annotations

import os

import pytest

from nbupload.batchpaths import NameClashError, expand_paths


def _tree(root, names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    return root


def _names(items):
    return [i.name for i in items]


def test_a_folder_is_walked_and_names_are_relative_to_it(tmp_path):
    res = _tree(
        tmp_path / "results",
        [
            "run1/metrics.csv",
            "run1/model.bin",
            "run2/metrics.csv",
            "top.txt",
            ".hidden",
            "run1/.cache/x",
            "run2/.env",
        ],
    )
    items = expand_paths([res])
    assert _names(items) == ["top.txt", "run1/metrics.csv", "run1/model.bin", "run2/metrics.csv"]
    assert items[1].path == str(res / "run1" / "metrics.csv") and items[1].size == len("run1/metrics.csv")
    assert set(_names(expand_paths([res], hidden=True))) >= {".hidden", "run1/.cache/x", "run2/.env"}


def test_globs_are_named_from_their_fixed_folder(tmp_path, monkeypatch):
    _tree(tmp_path / "results", ["run1/metrics.csv", "run2/metrics.csv", "run2/other.csv", "a.csv", ".b.csv"])
    monkeypatch.chdir(tmp_path)
    assert _names(expand_paths(["results/*/metrics.csv"])) == ["run1/metrics.csv", "run2/metrics.csv"]
    assert _names(expand_paths(["results/*.csv"])) == ["a.csv"]  # hidden left out
    assert _names(expand_paths(["results/**/*.csv"])) == [
        "a.csv",
        "run1/metrics.csv",
        "run2/metrics.csv",
        "run2/other.csv",
    ]
    # a glob matching folders walks them
    assert _names(expand_paths(["results/run*"])) == [
        "run1/metrics.csv",
        "run2/metrics.csv",
        "run2/other.csv",
    ]
    # an absolute glob
    assert _names(expand_paths([str(tmp_path / "results" / "run2" / "*.csv")])) == [
        "metrics.csv",
        "other.csv",
    ]


def test_a_file_named_explicitly_keeps_its_base_name_even_hidden(tmp_path):
    _tree(tmp_path, ["d/.env", "d/x.txt"])
    assert _names(expand_paths([tmp_path / "d" / ".env", tmp_path / "d" / "x.txt"])) == [".env", "x.txt"]


def test_a_literal_name_with_glob_characters_is_not_a_glob(tmp_path):
    _tree(tmp_path, ["weird[1].csv", "weird1.csv"])
    assert _names(expand_paths([tmp_path / "weird[1].csv"])) == ["weird[1].csv"]


def test_missing_paths_and_clashes_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        expand_paths([tmp_path / "nope.csv"])
    with pytest.raises(FileNotFoundError, match="no file matches"):
        expand_paths([str(tmp_path / "*.nothing")])
    _tree(tmp_path, ["a/x.csv", "b/x.csv"])
    with pytest.raises(NameClashError, match=r"x\.csv"):
        expand_paths([tmp_path / "a" / "x.csv", tmp_path / "b" / "x.csv"])
    # the same file twice is sent once
    assert len(expand_paths([tmp_path / "a" / "x.csv", str(tmp_path / "a" / "*.csv")])) == 1


def test_symlinked_folders_are_not_walked_symlinked_files_are_sent(tmp_path):
    _tree(tmp_path, ["outside/secret.txt", "d/real.txt"])
    os.symlink(tmp_path / "outside", tmp_path / "d" / "linkdir")
    os.symlink(tmp_path / "outside" / "secret.txt", tmp_path / "d" / "link.txt")
    os.symlink(tmp_path / "missing", tmp_path / "d" / "broken.txt")
    assert _names(expand_paths([tmp_path / "d"])) == ["link.txt", "real.txt"]
