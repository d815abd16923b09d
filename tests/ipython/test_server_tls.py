"""``%upload server start --tls`` in a real IPython shell: HTTPS with a self-signed certificate
the kernel's uploads trust, and ``%config Uploader.verify``."""

from __future__ import annotations

import hashlib
import os

from nbupload.engine.state import TaskState
from nbupload.ipython.extension import current_session


def test_server_start_tls_serves_https_and_the_kernel_trusts_it(shell, run, tmp_path, capsys):
    session = current_session(shell)
    try:
        run(shell, f"%upload server start --tls --root {tmp_path / 'srv'}")
        out = capsys.readouterr().out
        assert session.server is not None and session.server.base_url.startswith("https://")
        assert "self-signed certificate" in out
        ca = session.engine.config.verify
        assert isinstance(ca, str) and os.path.isfile(ca)
        data = os.urandom(300_000)
        path = tmp_path / "tls.bin"
        path.write_bytes(data)
        task = run(shell, f"%upload {path} --chunk-size 128KiB --wait -o")
        assert task.state is TaskState.DONE
        stored = (tmp_path / "srv" / "tls.bin").read_bytes()
        assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()
        # %config Uploader.verify reaches the engine
        run(shell, "%config Uploader.verify = False")
        assert session.engine.config.verify is False
        run(shell, f"%config Uploader.verify = {ca!r}")
        assert session.engine.config.verify == ca
    finally:
        run(shell, "%upload server stop")
        run(shell, "%config Uploader.verify = True")
