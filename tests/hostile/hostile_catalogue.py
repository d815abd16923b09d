"""The hostile-input catalogue: names, keys and requests a malicious client sends.

Each entry is data, not a test: ``test_hostile_server.py`` runs every entry against a real
server process and checks the documented answer (docs/protocols.md, docs/reliability.md),
that nothing was written outside the root and that the server is still alive.

Uploader ``filename``s are *rewritten* into one safe path component (the upload succeeds,
under a harmless name inside the root); WCS keys and buckets are *refused* with 400 when
unsafe (rewriting could map two keys onto one object) and stored under exactly their own
name when merely odd. Names are raw bytes where the wire carries bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BUCKETS", "FILENAMES", "KEYS", "HostileKey", "HostileName", "catalogue_size"]


@dataclass(frozen=True)
class HostileName:
    """An uploader filename exactly as it appears between the quotes of ``filename="..."``."""

    id: str
    raw: bytes


@dataclass(frozen=True)
class HostileKey:
    """A WCS key (form field ``key``) or bucket (token scope); ``refuse``: 400 expected,
    else stored as ``ROOT/<bucket>/<key>`` exactly."""

    id: str
    value: str
    refuse: bool


_LONG = "a" * 300
FILENAMES: tuple[HostileName, ...] = tuple(
    HostileName(i, raw)
    for i, raw in [
        # traversal, in every encoding a server might decode
        ("dotdot-slash", b"../../../../tmp/evil.txt"),
        ("dotdot-backslash", b"..\\..\\..\\evil.txt"),
        ("dotdot-mixed", b"..\\../..\\/evil.txt"),
        ("dotdot-alone", b".."),
        ("dot-alone", b"."),
        ("dotdot-pct", b"%2e%2e%2f%2e%2e%2fevil.txt"),
        ("dotdot-pct-upper", b"%2E%2E%2Fevil.txt"),
        ("dotdot-double-pct", b"..%252f..%252fevil.txt"),
        ("dotdot-pct-backslash", b"..%5c..%5cevil.txt"),
        ("dotdot-overlong-utf8", b"\xc0\xae\xc0\xae\xc0\xafevil.txt"),
        ("dotdot-overlong-3byte", b"\xe0\x80\xae\xe0\x80\xae/evil.txt"),
        ("dotdot-fullwidth", "\uff0e\uff0e\uff0fevil.txt".encode()),
        ("dotdot-one-dot-leader", "\u2025/evil.txt".encode()),
        ("dotdot-division-slash", "..\u2215..\u2215evil.txt".encode()),
        ("dotdot-html5-escaped-quote", b"..%22/evil.txt"),
        ("trailing-dots-spaces", b"evil.txt. . .  "),
        # absolute paths
        ("absolute-posix", b"/etc/passwd"),
        ("absolute-windows", b"C:\\Windows\\System32\\evil.dll"),
        ("unc-path", b"\\\\server\\share\\evil.txt"),
        ("home-tilde", b"~/.bashrc"),
        ("proc-self", b"/proc/self/cwd/evil.txt"),
        # NUL and control characters
        ("nul-truncation", b"evil.txt\x00.jpg"),
        ("nul-only", b"\x00"),
        ("escape-sequence", b"\x1b[31mred\x1b[0m.txt"),
        ("crlf-header-injection", b"a%0D%0AX-Injected: 1.txt"),
        ("bell-and-backspace", b"\x07\x08\x7f.txt"),
        ("c1-control", "a\u0085b\u009b.txt".encode()),
        ("tab-newline-raw", b"a\tb.txt"),
        # overlong
        ("overlong-300", _LONG.encode() + b".txt"),
        ("overlong-multibyte", ("\u6587" * 200 + ".csv").encode()),
        ("overlong-extension", b"a." + b"x" * 400),
        # reserved and special names
        ("windows-con", b"CON"),
        ("windows-nul-ext", b"nul.txt"),
        ("windows-com1", b"COM1.log"),
        ("windows-lpt9-spaces", b"lpt9 .txt"),
        ("hidden-partial-dir", b".partial"),
        ("hidden-wcs-dir", b".wcs"),
        ("dotfile", b".bashrc"),
        ("empty", b""),
        ("spaces-only", b"   "),
        # Unicode look-alikes and tricks
        ("rtl-override", "evil\u202etxt.exe".encode()),
        ("zero-width", "e\u200bvil\u200d.txt".encode()),
        ("bom", "\ufeffevil.txt".encode()),
        ("line-separator", "a\u2028b.txt".encode()),
        ("nfd-accents", "cafe\u0301.txt".encode()),
        ("cyrillic-a", "p\u0430sswd".encode()),
        ("chinese", "\u6570\u636e\u6587\u4ef6.csv".encode()),
        ("emoji", "\U0001f4c4 report.pdf".encode()),
        ("invalid-utf8", b"\xff\xfe\xfd.bin"),
        ("lone-surrogate-utf8", b"\xed\xa0\x80.bin"),
    ]
)

KEYS: tuple[HostileKey, ...] = tuple(
    HostileKey(i, v, r)
    for i, v, r in [
        ("dotdot-start", "../evil.txt", True),
        ("dotdot-deep", "../../../../tmp/evil.txt", True),
        ("dotdot-middle", "a/../../evil.txt", True),
        ("dotdot-end", "a/..", True),
        ("dot-component", "a/./b", True),
        ("empty-component", "a//b", True),
        ("trailing-slash", "dir/", True),
        ("absolute", "/etc/passwd", True),
        ("backslash-traversal", "..\\..\\evil.txt", True),
        ("backslash-plain", "a\\b", True),
        ("nul", "evil.txt\x00.jpg", True),
        ("newline", "a\nb", True),
        ("escape", "\x1b[2J", True),
        ("rtl-override", "evil\u202etxt.exe", True),
        ("zero-width-space", "a\u200bb", True),
        ("component-too-long", "d/" + "x" * 300, True),
        ("key-too-long", "/".join(["abcdefgh"] * 200), True),
        ("reserved-con", "CON", True),
        ("reserved-in-dir", "dir/aux.txt", True),
        ("empty-key", "", True),
        # odd but harmless: stored under exactly this name, inside the root
        ("pct-encoded-dotdot", "%2e%2e%2fevil.txt", False),
        ("dotdot-inside-name", "a..b/c..d", False),
        ("fullwidth-dots", "\uff0e\uff0e/evil.txt", False),
        ("division-slash", "..\u2215evil.txt", False),
        ("hidden-in-subdir", "dir/.hidden", False),
        ("chinese", "\u65e5\u5fd7/\u4eca\u5929.log", False),
        ("nested", "a/b/c/d/e.log", False),
        ("spaces", "my file (1).txt", False),
    ]
)

BUCKETS: tuple[HostileKey, ...] = tuple(
    HostileKey(i, v, True)
    for i, v in [
        ("bucket-dotdot", ".."),
        ("bucket-dot", "."),
        ("bucket-partial", ".partial"),
        ("bucket-wcs-sidecars", ".wcs"),
        ("bucket-backslash", "..\\x"),
        ("bucket-nul", "b\x00"),
        ("bucket-slash-traversal", "a/../../tmp"),
    ]
)


def catalogue_size() -> int:
    return len(FILENAMES) + len(KEYS) + len(BUCKETS)
