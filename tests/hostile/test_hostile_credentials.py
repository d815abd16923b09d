"""Hostile WCS credentials: every bad token is 401 with a message that helps and leaks nothing.

"Leaks nothing" means: no secret key, no full token, and never the *correct* signature of
the policy presented (that would make the server a signing oracle). The server process
logs at DEBUG; after the cases, its whole log is scanned for the same secrets.
"""

from __future__ import annotations

import base64
import json
import time

import pytest
from hostile_fixtures import ACCESS_KEY, CREDENTIALS, SECRET_KEY
from hostile_client import append, make_token

from nbupload.protocols import wcs

pytestmark = pytest.mark.timeout(120)

OTHER_KEY = "AKother"
NOW_MS = int(time.time() * 1000)
FUTURE = NOW_MS + 3_600_000


def _policy(token: str) -> str:
    return token.split(":")[2]


def _tamper(token: str, **changes: object) -> str:
    ak, sign, encoded = token.split(":")
    policy = json.loads(base64.urlsafe_b64decode(encoded))
    policy.update(changes)
    return f"{ak}:{sign}:" + base64.urlsafe_b64encode(json.dumps(policy).encode()).decode()


def _good(scope: str = "cred", deadline: int | str = FUTURE) -> str:
    return make_token(scope, access_key=ACCESS_KEY, secret_key=SECRET_KEY, deadline=deadline)


CASES = [
    # (id, token, key, words the message must contain)
    (
        "forged-signature",
        make_token("cred", access_key=ACCESS_KEY, secret_key="guessed-secret", deadline=FUTURE),
        "a.log",
        ["signature"],
    ),
    ("expired-ms-number", _good(deadline=NOW_MS - 1000), "a.log", ["expired"]),
    ("expired-ms-string", _good(deadline=str(NOW_MS - 1000)), "a.log", ["expired"]),
    ("expired-long-ago", _good(deadline=1), "a.log", ["expired"]),
    ("deadline-in-seconds-not-ms", _good(deadline=NOW_MS // 1000 + 3600), "a.log", ["expired"]),
    ("deadline-not-a-number", _good(deadline="tomorrow"), "a.log", ["deadline"]),
    ("scope-does-not-cover-key", _good(scope="cred:allowed.log"), "other.log", ["scope", "other.log"]),
    (
        "scope-other-bucket-via-key-traversal",
        _good(scope="cred:allowed.log"),
        "../other/allowed.log",
        ["scope"],
    ),
    ("tampered-scope", _tamper(_good(scope="cred:allowed.log"), scope="cred"), "x.log", ["signature"]),
    ("tampered-deadline", _tamper(_good(deadline=NOW_MS - 1000), deadline=FUTURE), "a.log", ["signature"]),
    ("tampered-fsize-limit", _tamper(_good(), fsizeLimit=0, overwrite=1), "a.log", ["signature"]),
    ("token-for-another-access-key", f"{OTHER_KEY}:" + _good().split(":", 1)[1], "a.log", ["signature"]),
    (
        "unknown-access-key",
        make_token("cred", access_key="AKnobody", secret_key=SECRET_KEY, deadline=FUTURE),
        "a.log",
        ["unknown access key"],
    ),
    ("malformed-two-parts", "AKhostile:abc", "a.log", ["malformed"]),
    ("malformed-empty-parts", "::", "a.log", ["malformed"]),
    ("malformed-not-base64", f"{ACCESS_KEY}:{wcs.sign(SECRET_KEY, '!!!')}:!!!", "a.log", ["policy"]),
    ("empty-token", "", "a.log", ["token"]),
    ("secret-key-as-token", SECRET_KEY, "a.log", ["malformed"]),
]


@pytest.mark.parametrize("token_first", [True, False], ids=["token-first", "file-first"])
@pytest.mark.parametrize(("case", "token", "key", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_tokens_are_401_with_a_helpful_message(fence, case, token, key, words, token_first):
    answer = append(fence.address, 0, token, b"payload", key=key, token_first=token_first)
    assert answer is not None and answer.status == 401, answer and answer.text
    obj = json.loads(answer.body)
    message = obj["message"]
    for word in words:
        assert word.lower() in message.lower(), message
    for secret in CREDENTIALS.values():
        assert secret not in answer.text
    if token.count(":") == 2 and all(token.split(":")):
        assert token not in answer.text
        assert wcs.sign(SECRET_KEY, _policy(token)) not in answer.text  # no signing oracle
    assert not (fence.root / "cred").exists() and not (fence.root / "other").exists()
    spool = fence.root / ".wcs" / "spool"
    assert not spool.exists() or not any(spool.iterdir())


def test_a_valid_token_works_and_the_log_holds_no_secret(fence):
    """Control case (the same path accepts a good token), then the DEBUG log scan."""
    token = _good(scope="cred-ok")
    answer = append(fence.address, 0, token, b"payload", key="ok.log")
    assert answer is not None and answer.status == 200, answer and answer.text
    assert (fence.root / "cred-ok" / "ok.log").read_bytes() == b"payload"
    log = fence.proc.log_text()
    assert "serving on" in log and "DEBUG" in log  # the log was captured, at DEBUG
    for secret in CREDENTIALS.values():
        assert secret not in log
    for _, bad, _, _ in CASES:
        if bad.count(":") == 2 and all(bad.split(":")):
            assert bad not in log
    assert token not in log and token.split(":")[1] not in log
