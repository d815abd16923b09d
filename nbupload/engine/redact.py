"""Which names look secret, and how secrets are kept out of URLs, reprs and the journal.

Used by the journal (what may be written down), by tasks (the URL shown to people) and by
the engine's error messages; it holds no journal logic.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping

__all__ = ["is_secret_name", "redact_url", "split_secrets"]

_SECRET_NAME = re.compile(
    r"auth|token|secret|passw|cookie|signature|credential|api[-_]?key|session", re.IGNORECASE
)


def is_secret_name(name: str) -> bool:
    """Whether a header or form field called ``name`` probably carries a credential."""
    return bool(_SECRET_NAME.search(name))


def split_secrets(items: Mapping[str, str] | None) -> tuple[dict[str, str], list[str]]:
    """``(kept, secret_names)``: the values safe to write down, and the names left out."""
    kept: dict[str, str] = {}
    secret: list[str] = []
    for k, v in (items or {}).items():
        (secret.append(k) if is_secret_name(k) else kept.__setitem__(k, v))
    return kept, secret


def redact_url(url: str, mask: str | None = "***") -> tuple[str, list[str]]:
    """The URL with secret-looking query values and any password masked (``mask``) or
    dropped (``mask=None``), and the names of the query parameters concerned."""
    key = (_digest(url), mask)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
    if hit is None:
        hit = _redact_url(url, mask)
        with _CACHE_LOCK:
            _CACHE[key] = hit
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    shown, names = hit
    return shown, list(names)


#: A batch's tasks share one URL: parsing it once rather than three times per file saves
#: 50-110 us a call (``httpx.URL``), a few % of a small file's CPU. The cache holds only the
#: redacted result, keyed by a keyed hash of the URL: never the URL itself, which may carry a
#: token (the key is per process, so the digests say nothing outside it).
_CACHE_SIZE = 16
_CACHE: OrderedDict[tuple[bytes, str | None], tuple[str, tuple[str, ...]]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_HASH_KEY = secrets.token_bytes(16)


def _digest(url: str) -> bytes:
    return hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=16, key=_HASH_KEY).digest()


def _redact_url(url: str, mask: str | None) -> tuple[str, tuple[str, ...]]:
    import httpx

    u = httpx.URL(url)
    names: list[str] = []
    kept: list[tuple[str, str | int | float | bool | None]] = []
    for k, v in u.params.multi_items():
        if is_secret_name(k):
            names.append(k)
            if mask is not None:
                kept.append((k, mask))
        else:
            kept.append((k, v))
    if not names and not u.password:
        return url, ()
    clean = u.copy_with(params=httpx.QueryParams(kept)) if names else u
    if u.password:
        clean = clean.copy_with(password=mask or "")
        names.append(":password")
    return str(clean).replace("%2A%2A%2A", "***"), tuple(names)
