"""A self-signed certificate for a local HTTPS demo (``%upload server start --tls``).

trustme (the ``server`` extra, built on ``cryptography``) makes a throwaway certificate
authority and a certificate for the loopback names; the server gets a context with the
certificate, the client is told to trust the authority's PEM (``verify=<path>``), so nothing
needs ``verify=False``.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SelfSigned", "self_signed"]


@dataclass
class SelfSigned:
    """A server TLS context and the PEM file of the authority that signed its certificate."""

    context: ssl.SSLContext
    ca_file: Path


def self_signed(
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1"), directory: Path | None = None
) -> SelfSigned:
    """A fresh certificate for ``hosts``; the authority's PEM is written under ``directory``
    (default: a new private temp dir) for clients to trust."""
    try:
        import trustme
    except ImportError:
        raise RuntimeError(
            "a self-signed certificate needs trustme: pip install 'nbupload[server]'"
        ) from None
    ca = trustme.CA()
    cert = ca.issue_cert(*hosts)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    where = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="nbupload-tls-"))
    ca_file = where / "nbupload-demo-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    os.chmod(ca_file, 0o644)
    return SelfSigned(context, ca_file)
