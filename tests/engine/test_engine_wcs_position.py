"""WCS append of a file that grew since its last upload: ``submit(..., position=N)``."""

from __future__ import annotations

import pytest

from nbupload.protocols import wcs

from tests.support.helpers import CREDENTIALS

AK, SK = next(iter(CREDENTIALS.items()))


def _append_upload(engine, server, path, **options):
    return engine.submit(
        path,
        server.url,
        protocol="wcs-append",
        access_key=AK,
        secret_key=SK,
        scope="logs",
        key="run/train.log",
        **options,
    )


def test_a_growing_file_is_appended_in_steps_and_verified(server, engine, tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(b"".join(b"epoch %d loss %.3f\n" % (i, 1 / (i + 1)) for i in range(2000)))
    first = _append_upload(engine, server, log).wait(30, raise_on_error=True)
    assert first.result["position"] == log.stat().st_size
    with open(log, "ab") as f:
        f.write(b"".join(b"epoch %d loss %.3f\n" % (i, 1 / (i + 1)) for i in range(2000, 2600)))
    before = server.stats()["wcs"]
    task = _append_upload(engine, server, log, position=first.result["position"])
    assert task.snapshot().acked == first.result["position"]  # what the object held counts as done
    snap = task.wait(30, raise_on_error=True)
    stored = server.root / "logs" / "run" / "train.log"
    assert stored.read_bytes() == log.read_bytes()
    assert snap.result["verified"] and snap.result["hash"] == wcs.etag_of(log.read_bytes())
    # only the new tail travelled: one append of the grown part
    assert server.stats()["wcs"]["requests"] - before["requests"] == 1


def test_a_wrong_position_is_a_conflict_never_an_overwrite(server, engine, tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"x" * 5000)
    _append_upload(engine, server, log).wait(30, raise_on_error=True)
    log.write_bytes(b"x" * 9000)
    snap = _append_upload(engine, server, log, position=3000).wait(30)
    assert snap.state.value == "failed" and snap.error.status == 409
    assert "5000" in snap.error.message
    assert (server.root / "logs" / "run" / "train.log").stat().st_size == 5000


def test_position_is_checked(server, engine, tmp_path):
    data = tmp_path / "d.bin"
    data.write_bytes(b"abc")
    with pytest.raises(ValueError, match="outside the source"):
        _append_upload(engine, server, data, position=4)
    with pytest.raises(ValueError, match="wcs-append"):
        engine.submit(data, server.upload_url, position=1)
