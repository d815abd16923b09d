"""``nbupload.open_append`` against the real reference server over loopback."""

from __future__ import annotations

import io
import logging

import httpx
import pytest

import nbupload
from nbupload.protocols import wcs
from nbupload.protocols.multipart import BytesSource
from tests.push.conftest import AK, SK
from tests.support.helpers import wait_for
from tests.support.proxy import Fault, FaultProxy


def _stored(server, key: str = "run/out.log"):
    return server.root / "logs" / key


def _other_append(server, position: int, data: bytes, key: str = "run/out.log") -> int:
    """Someone else appends (a plain client, not the stream under test)."""
    tok = wcs.make_token(AK, SK, wcs.PutPolicy(scope="logs", deadline=2**41))
    body = wcs.prepare_append(tok, BytesSource(data), key=key)
    r = httpx.post(
        f"{server.url}/append/{position}", content=body.read_all(), headers=body.headers, timeout=30
    )
    return r.status_code


def test_writes_are_buffered_appended_and_verified(server, creds):
    data = [bytes([i % 251]) * (3000 + i * 977) for i in range(40)]
    with nbupload.open_append(
        server.url, key="run/out.log", flush_size=64 << 10, max_append=64 << 10, **creds
    ) as w:
        for piece in data:
            assert w.write(piece) == len(piece)
    expected = b"".join(data)
    assert _stored(server).read_bytes() == expected
    assert w.verified and w.hash == w.local_hash == wcs.etag_of(expected)
    assert w.position == len(expected)
    # buffered: fewer appends than writes, none over max_append
    assert -(-len(expected) // (64 << 10)) <= w.stats["appends"] < len(data)


def test_the_stream_starts_at_the_objects_size_and_a_text_wrapper_works(server, creds):
    assert _other_append(server, 0, b"header line\n") == 200
    w = nbupload.open_append(server.url, key="run/out.log", **creds)
    assert w.start == w.position == len(b"header line\n")
    text = io.TextIOWrapper(w, encoding="utf-8", write_through=True)
    text.write("ünïcode line\n")
    text.close()  # closes the stream: sends and checks
    assert _stored(server).read_bytes() == "header line\nünïcode line\n".encode()
    assert w.closed and w.hash == wcs.etag_of(_stored(server).read_bytes())
    assert not w.verified and w.local_hash is None  # started at > 0 without prefix=: no local etag


def test_prefix_lets_a_stream_started_later_verify_the_whole(server, creds, tmp_path):
    local = tmp_path / "train.log"
    local.write_bytes(b"epoch 1\n" * 1000)
    assert _other_append(server, 0, local.read_bytes()) == 200
    with nbupload.open_append(server.url, key="run/out.log", prefix=local, **creds) as w:
        w.write(b"epoch 2\n")
    assert w.verified and w.local_hash == wcs.etag_of(local.read_bytes() + b"epoch 2\n")


def test_the_interval_sends_without_a_flush(server, creds):
    w = nbupload.open_append(server.url, key="run/out.log", interval=0.2, **creds)
    w.write(b"a line waiting less than flush_size\n")
    wait_for(lambda: _stored(server).exists() and _stored(server).stat().st_size == 36, timeout=60)
    w.close()
    assert w.verified


def test_memory_stays_bounded_when_writing_more_than_the_buffer(server, creds):
    chunk = bytes(range(256)) * 1024  # 256 KiB
    with nbupload.open_append(
        server.url, key="big.bin", max_buffer=512 << 10, flush_size=128 << 10, max_append=256 << 10, **creds
    ) as w:
        for _ in range(24):  # 6 MiB: more than one 4 MiB etag block
            w.write(chunk)
            assert len(w._shared.pending) <= 512 << 10
    assert _stored(server, "big.bin").stat().st_size == 24 * len(chunk)
    assert w.verified


def test_lost_answers_never_duplicate_bytes(server, creds):
    with FaultProxy.for_url(server.url) as proxy:
        # the first three connections each deliver an append and lose its answer
        proxy.add(Fault(swallow_after=1), Fault(swallow_after=1), Fault(swallow_after=1))
        w = nbupload.open_append(proxy.url, key="run/out.log", position=0, backoff_base=0.01, **creds)
        w.write(b"first piece\n")
        w.flush()
        w.write(b"second piece\n")
        proxy.close_connections()  # the next append needs a new connection: lose its answer too
        proxy.add(Fault(swallow_after=1))
        w.close()  # the last answer lost: close asks the server for the hash again
        assert proxy.counters.swallowed == 4
    assert _stored(server).read_bytes() == b"first piece\nsecond piece\n"
    assert w.verified and w.hash == wcs.etag_of(b"first piece\nsecond piece\n")
    assert w.stats["replays"] >= 4


def test_someone_elses_append_is_a_conflict_with_both_positions(server, creds):
    w = nbupload.open_append(server.url, key="run/out.log", **creds)
    w.write(b"mine\n")
    w.flush()
    assert _other_append(server, 5, b"theirs\n") == 200
    w.write(b"mine again\n")
    with pytest.raises(nbupload.AppendConflict) as info:
        w.flush()
    err = info.value
    assert (err.expected, err.actual, err.status, err.code) == (5, 12, 409, "409")
    assert "5" in str(err) and "12" in str(err) and SK not in str(err)
    assert err.unsent == len(b"mine again\n")
    with pytest.raises(nbupload.AppendConflict):  # the stream stays failed
        w.write(b"more")
    with pytest.raises(nbupload.AppendConflict):
        w.close()
    assert w.closed
    assert _stored(server).read_bytes() == b"mine\ntheirs\n"  # nothing overwritten


def test_a_wrong_position_fails_the_first_append(server, creds):
    assert _other_append(server, 0, b"0123456789") == 200
    w = nbupload.open_append(server.url, key="run/out.log", position=4, **creds)
    w.write(b"x")
    with pytest.raises(nbupload.AppendConflict) as info:
        w.close()
    assert (info.value.expected, info.value.actual) == (4, 10)
    assert isinstance(info.value, OSError)


def test_bad_credentials_fail_at_open_with_the_servers_code(server):
    with pytest.raises(nbupload.AppendStreamError) as info:
        nbupload.open_append(server.url, key="k", access_key=AK, secret_key="wrong-secret", scope="logs")
    assert info.value.status == 401 and info.value.code == "401"
    assert "wrong-secret" not in str(info.value)
    with pytest.raises(ValueError, match="secret_key"):
        nbupload.open_append(server.url, key="k", access_key=AK, scope="logs")


def test_a_normal_object_is_not_appendable(server, creds):
    (server.root / "logs").mkdir(parents=True)
    (server.root / "logs" / "plain.txt").write_bytes(b"not appendable")
    with pytest.raises(nbupload.AppendStreamError, match="not appendable") as info:
        nbupload.open_append(server.url, key="plain.txt", **creds)
    assert info.value.status == 409


def test_no_secret_in_repr(server, creds):
    with nbupload.open_append(server.url, key="run/out.log", **creds) as w:
        assert SK not in repr(w) and "logs/run/out.log" in repr(w)


def test_logging_handler_appends_lines(server, creds):
    handler = nbupload.AppendHandler(server.url, key="train.log", **creds)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("nbupload.tests.append")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        for i in range(100):
            log.info("step %d loss %.3f", i, 1 / (i + 1))
        handler.flush()
        assert _stored(server, "train.log").read_text().count("\n") == 100
        log.warning("done")
    finally:
        log.removeHandler(handler)
        handler.close()
    lines = _stored(server, "train.log").read_text().splitlines()
    assert lines[0] == "INFO step 0 loss 1.000" and lines[-1] == "WARNING done" and len(lines) == 101
    assert handler.stream.verified


def test_logging_handler_reports_a_failure_once(server, creds, capsys):
    handler = nbupload.AppendHandler(server.url, key="train.log", **creds)
    log = logging.getLogger("nbupload.tests.append.fail")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.error("one")
        handler.stream.flush()
        assert _stored(server, "train.log").read_bytes() == b"one\n"
        assert _other_append(server, 4, b"intruder\n", key="train.log") == 200
        log.error("two")
        with pytest.raises(nbupload.AppendConflict):
            handler.stream.flush()
        log.error("three")
        log.error("four")
    finally:
        log.removeHandler(handler)
    # "two" was buffered before the conflict was known: it is unsent; "three" raised (reported),
    # "four" dropped
    assert handler.dropped == 2 and handler.stream.unsent == len(b"two\n")
    assert capsys.readouterr().err.count("conflict") == 1
    with pytest.raises(nbupload.AppendConflict):
        handler.close()


def test_dataframes_written_in_pieces(server, creds):
    import pandas as pd

    frames = [
        pd.DataFrame({"step": range(i * 50, i * 50 + 50), "loss": [1 / (j + 1) for j in range(50)]})
        for i in range(4)
    ]
    with nbupload.open_append(server.url, key="metrics.csv", **creds) as w:
        text = io.TextIOWrapper(w, encoding="utf-8", newline="", write_through=True)
        for i, df in enumerate(frames):
            df.to_csv(text, header=i == 0, index=False)
        text.flush()
    stored = _stored(server, "metrics.csv").read_bytes()
    assert stored == pd.concat(frames).to_csv(index=False).encode()
    assert w.verified


def test_a_prefix_that_is_not_the_objects_is_refused_at_open(server, creds, tmp_path):
    assert _other_append(server, 0, b"the object's own bytes\n") == 200
    local = tmp_path / "other.log"
    local.write_bytes(b"something else entirely\n")
    with pytest.raises(nbupload.AppendHashMismatch, match="nothing was appended"):
        nbupload.open_append(server.url, key="run/out.log", prefix=local, **creds)
    assert _stored(server).read_bytes() == b"the object's own bytes\n"
    with nbupload.open_append(server.url, key="run/out.log", **creds) as w:
        assert w.server_hash() == wcs.etag_of(b"the object's own bytes\n")
