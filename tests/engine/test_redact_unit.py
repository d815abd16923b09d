"""``redact_url``: secrets masked or dropped, and its cache (a batch's tasks share one URL)
never keeps a URL that carries a token, only the redacted result under a keyed digest."""

from __future__ import annotations

import gc

from nbupload.engine import redact
from nbupload.engine.redact import redact_url

TOKEN = "tok-5f0c1e9a77d24b31SECRET"


def test_secrets_are_masked_or_dropped_and_the_answers_repeat():
    url = f"http://user:pw-SECRET@127.0.0.1:8765/upload?x=1&token={TOKEN}&y=2"
    shown, names = redact_url(url)
    assert shown.endswith(":***@127.0.0.1:8765/upload?x=1&token=***&y=2"), shown
    assert names == ["token", ":password"]
    assert redact_url(url) == (shown, names)  # the cached answer is the same
    names.append("changed by a caller")
    assert redact_url(url)[1] == ["token", ":password"]  # callers get their own list
    dropped, _ = redact_url(url, mask=None)
    assert TOKEN not in dropped and "pw-SECRET" not in dropped and "x=1" in dropped
    assert redact_url("http://127.0.0.1:8765/upload?x=1") == ("http://127.0.0.1:8765/upload?x=1", [])


def test_the_cache_holds_no_url_with_a_secret_and_stays_small():
    for i in range(40):
        redact_url(f"http://127.0.0.1:{9000 + i}/upload?token={TOKEN}{i}")
    assert len(redact._CACHE) <= redact._CACHE_SIZE
    held = repr(list(redact._CACHE.items()))
    assert TOKEN not in held, held
    # nothing the module holds (its globals, and what they hold, three levels down) is a
    # string with the token: not the cache's keys, not a URL kept for the next call
    seen, level, leaked = set(), list(vars(redact).values()), []
    for _depth in range(3):
        nxt = []
        for obj in gc.get_referents(*level):
            if id(obj) in seen or isinstance(obj, type(redact)):
                continue
            seen.add(id(obj))
            if isinstance(obj, (str, bytes)):
                leaked += [obj] if TOKEN in str(obj) else []
            else:
                nxt.append(obj)
        level = nxt
    assert leaked == []
