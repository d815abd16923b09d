"""WCS credentials and tokens, and etag hashing, no network."""

from __future__ import annotations

import os
import time
import types

import pytest

from nbupload.engine import credentials
from nbupload.engine.credentials import CredentialsError, WcsCredentials, resolve_wcs_credentials
from nbupload.protocols import wcs


def test_credentials_mint_fresh_tokens_and_hide_the_secret(monkeypatch):
    now = [time.time()]  # the credentials' clock is the test's: a busy machine cannot age the token
    monkeypatch.setattr(credentials, "time", types.SimpleNamespace(time=lambda: now[0]))
    creds = WcsCredentials(scope="bkt:key", access_key="AK", secret_key="SK-secret", ttl=1.0)
    t1 = creds.current()
    policy = wcs.verify_token(t1, {"AK": "SK-secret"}, int(time.time() * 1000))
    assert policy.scope == "bkt:key"
    assert creds.current() == t1  # cached while it has time left
    now[0] += 0.8
    assert creds.current() != t1  # within the renewal margin (a quarter of the ttl): a new one
    assert "SK-secret" not in repr(creds) and t1 not in repr(creds)
    with pytest.raises(CredentialsError, match="missing: secret key"):
        WcsCredentials(scope="b", access_key="AK")
    monkeypatch.setenv("NBUPLOAD_ACCESS_KEY", "AK2")
    monkeypatch.setenv("NBUPLOAD_SECRET_KEY", "SK2")
    c = resolve_wcs_credentials(token=None, access_key=None, secret_key=None, scope="b")
    assert c.access_key == "AK2" and c.current().startswith("AK2:")
    c = resolve_wcs_credentials(token=None, access_key="AK", secret_key="SK", scope="b")
    assert c.access_key == "AK"
    tok = wcs.make_token("AK3", "SK3", wcs.PutPolicy("b3:k", int(time.time() * 1000) + 60_000))
    c = resolve_wcs_credentials(token=tok, access_key=None, secret_key=None, scope=None)
    assert c.current() == tok and c.scope == "b3:k" and not c.refresh()


def test_forked_etag_matches_a_straight_one():
    data = os.urandom(9 << 20)
    h = wcs.EtagHasher()
    h.update(data[: 5 << 20])
    twin = h.copy()
    twin.update(data[5 << 20 :])
    h.update(b"different")
    assert twin.etag() == wcs.etag_of(data)
