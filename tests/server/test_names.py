"""Unit tests of the name sanitizing module (no server)."""

from __future__ import annotations

import os

import pytest

from nbupload.server.names import (
    UnsafeNameError,
    has_denied_extension,
    normalize_extensions,
    open_dir_chain,
    sanitize_filename,
    split_key,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("image.jpg", "image.jpg"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/etc/shadow", "shadow"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("..", "upload"),
        ("", "upload"),
        (None, "upload"),
        (".partial", "partial"),
        (".wcs", "wcs"),
        ("...hidden", "hidden"),
        ("a\x00b\r\nc.txt", "a_b__c.txt"),
        ("evil\u202etxt.exe", "evil_txt.exe"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("lpt1.tar.gz", "_lpt1.tar.gz"),
        ("trailing. . ", "trailing"),
        ("报告 2024.xlsx", "报告 2024.xlsx"),
        ("..%2f..%2fetc%2fpasswd", "%2f..%2fetc%2fpasswd"),
        ("%2e%2e/x", "x"),
    ],
)
def test_sanitize_filename(raw, expected):
    assert sanitize_filename(raw) == expected


def test_sanitize_filename_long_names_keep_extension_and_utf8():
    name = "é" * 300 + ".csv"
    out = sanitize_filename(name)
    assert out.endswith(".csv")
    assert len(out.encode("utf-8")) <= 255
    out.encode("utf-8").decode("utf-8")  # cut on a character boundary
    assert sanitize_filename("x" * 1000).startswith("xxx") and len(sanitize_filename("x" * 1000)) == 255


def test_sanitize_filename_never_yields_a_separator_or_dot_start():
    for raw in ["a/b", "a\\b", "./.", "/..", ". .", "\x00", "../.partial/x", "．．／x"]:
        out = sanitize_filename(raw)
        assert "/" not in out and "\x00" not in out and not out.startswith(".") and out not in ("", ".", "..")


def test_deny_extensions():
    denied = normalize_extensions("exe, .BAT,,")
    assert denied == (".exe", ".bat")
    assert has_denied_extension("setup.EXE", denied)
    assert has_denied_extension(sanitize_filename("run.bat. "), denied)
    assert not has_denied_extension("exe.txt", denied)


@pytest.mark.parametrize(
    ("bucket", "key", "comps"),
    [
        ("b", "k", ["b", "k"]),
        ("b", "dir/sub/f.log", ["b", "dir", "sub", "f.log"]),
        ("b", "..x", ["b", "..x"]),
    ],
)
def test_split_key_accepts(bucket, key, comps):
    assert split_key(bucket, key) == comps


@pytest.mark.parametrize(
    ("bucket", "key"),
    [
        ("b", "../x"),
        ("b", "a/../../x"),
        ("b", "/etc/passwd"),
        ("b", "a//b"),
        ("b", "a/"),
        ("b", "a\\..\\b"),
        ("b", "a\x00b"),
        ("b", "a\nb"),
        ("b", "x" * 256),
        ("b", "dir/CON"),
        (".wcs", "k"),
        (".partial", "k"),
        ("..", "k"),
        ("a/b", "k"),
        ("b", "."),
    ],
)
def test_split_key_refuses(bucket, key):
    with pytest.raises(UnsafeNameError):
        split_key(bucket, key)


def test_open_dir_chain_never_follows_symlinks(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(UnsafeNameError):
            os.close(open_dir_chain(fd, ["link", "x"], create=True))
        assert list(outside.iterdir()) == []
        sub = open_dir_chain(fd, ["a", "b"], create=True)
        os.close(sub)
        assert (root / "a" / "b").is_dir()
        with pytest.raises(FileNotFoundError):
            open_dir_chain(fd, ["missing"], create=False)
    finally:
        os.close(fd)
