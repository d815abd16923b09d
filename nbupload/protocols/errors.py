"""Exceptions of the protocols layer."""

from __future__ import annotations

__all__ = ["ProtocolError", "TokenError"]


class ProtocolError(ValueError):
    """Bytes on the wire that do not follow the protocol (either direction)."""


class TokenError(ProtocolError):
    """An upload token that is malformed, forged, expired or out of scope.

    The message is meant for the person holding the token: it says what is wrong and
    never contains a secret key.
    """
