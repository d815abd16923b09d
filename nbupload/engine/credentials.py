"""WCS upload tokens: given as is, or made (and remade before they expire) from a key pair.

Secrets live only in memory, in this object; its repr and every message show the access
key at most.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from dataclasses import dataclass, field

from ..errors import CredentialsError
from ..protocols import wcs
from ..protocols.errors import ProtocolError

__all__ = ["CredentialsError", "WcsCredentials", "resolve_wcs_credentials"]


def _token_policy(token: str) -> wcs.PutPolicy | None:
    """The policy a token carries (unverified: only the server knows the secret)."""
    try:
        _, _, encoded = wcs.parse_token(token)
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        return wcs.PutPolicy.from_obj(json.loads(raw.decode("utf-8")))
    except (ProtocolError, ValueError, UnicodeDecodeError):
        return None


@dataclass
class WcsCredentials:
    """A fixed token, or ``access_key`` + ``secret_key`` + ``scope`` to mint tokens from."""

    scope: str | None = None
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    ttl: float = 3600.0
    _cached: tuple[str, float] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.token:
            try:
                ak, _, _ = wcs.parse_token(self.token)
            except ProtocolError as exc:
                raise CredentialsError(str(exc)) from None
            self.access_key = self.access_key or ak
            policy = _token_policy(self.token)
            if policy is not None and not self.scope:
                self.scope = policy.scope
        elif not (self.access_key and self.secret_key and self.scope):
            missing = [
                n
                for n, v in (
                    ("access key", self.access_key),
                    ("secret key", self.secret_key),
                    ("scope", self.scope),
                )
                if not v
            ]
            raise CredentialsError(
                "wcs-append needs a token, or an access key, secret key and scope; missing: "
                + ", ".join(missing)
            )

    def current(self) -> str:
        """A token valid for a while yet (minted anew when the last is near its deadline)."""
        if self.token:
            return self.token
        assert self.access_key and self.secret_key and self.scope
        with self._lock:
            now = time.time()
            if self._cached is None or self._cached[1] - now < min(300.0, self.ttl / 4):
                deadline = now + self.ttl
                policy = wcs.PutPolicy(scope=self.scope, deadline=int(deadline * 1000))
                self._cached = (wcs.make_token(self.access_key, self.secret_key, policy), deadline)
            return self._cached[0]

    def refresh(self) -> bool:
        """Forget the cached token; False when there is nothing to remake it from."""
        with self._lock:
            self._cached = None
        return not self.token

    @property
    def bucket_key(self) -> tuple[str | None, str | None]:
        if not self.scope:
            return None, None
        bucket, sep, key = self.scope.partition(":")
        return bucket, key if sep else None


def resolve_wcs_credentials(
    *,
    token: str | None,
    access_key: str | None,
    secret_key: str | None,
    scope: str | None,
    defaults: tuple[str | None, str | None, str | None] = (None, None, None),
    ttl: float = 3600.0,
) -> WcsCredentials:
    """Options first, then the engine's configuration, then the environment
    (``NBUPLOAD_ACCESS_KEY`` + ``NBUPLOAD_SECRET_KEY``, else ``NBUPLOAD_TOKEN``).
    A key pair wins over a token at the same level, since it can mint fresh tokens."""
    cfg_token, cfg_ak, cfg_sk = defaults
    env = os.environ
    levels = (
        (token, access_key, secret_key),
        (cfg_token, cfg_ak, cfg_sk),
        (env.get("NBUPLOAD_TOKEN"), env.get("NBUPLOAD_ACCESS_KEY"), env.get("NBUPLOAD_SECRET_KEY")),
    )
    for tok, ak, sk in levels:
        if ak and sk and scope:
            return WcsCredentials(scope=scope, access_key=ak, secret_key=sk, ttl=ttl)
        if tok:
            return WcsCredentials(scope=scope, token=tok, ttl=ttl)
        if ak or sk:
            break  # a half-given key pair: say what is missing below
    ak = access_key or cfg_ak or env.get("NBUPLOAD_ACCESS_KEY")
    sk = secret_key or cfg_sk or env.get("NBUPLOAD_SECRET_KEY")
    return WcsCredentials(scope=scope, access_key=ak, secret_key=sk, ttl=ttl)
