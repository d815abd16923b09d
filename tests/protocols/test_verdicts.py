"""The uploader protocol's retry verdicts: one table, pure."""

from __future__ import annotations

import pytest

from nbupload.protocols import uploader
from nbupload.protocols.ranges import RangeSet
from nbupload.protocols.verdict import VerdictKind as K


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, b'{"result":"OK","code":0}', K.OK),
        (200, b"", K.OK),
        (307, b"", K.REDIRECT),
        (413, b'{"result":"ERROR","code":4001}', K.TOO_LARGE),
        (413, b"too big", K.TOO_LARGE),
        (413, b'{"result":"ERROR","code":4002}', K.FATAL),
        (200, b'{"result":"ERROR","code":4008}', K.FATAL),
        (400, b'{"result":"ERROR","code":4003}', K.RETRY),
        (507, b'{"result":"ERROR","code":4007}', K.RETRY),
        (503, b"busy", K.RETRY),
        (401, b"", K.FATAL),
        (400, b"bad", K.FATAL),
    ],
)
def test_classify_chunk(status, body, kind):
    verdict = uploader.classify_chunk(uploader.process_chunk_answer(status, body), "http://elsewhere/")
    assert verdict.kind is kind
    if kind is K.REDIRECT:
        assert verdict.location == "http://elsewhere/"


def test_classify_query():
    good = uploader.QueryAnswer(True, held={"file": RangeSet()})
    bad = uploader.process_query_answer(200, b"<html>", "b" * 20)
    assert uploader.classify_query(200, good, False).kind is K.OK
    assert uploader.classify_query(200, bad, False).kind is K.PLAIN
    assert uploader.classify_query(200, bad, True).kind is K.RETRY
    assert uploader.classify_query(503, bad, False).kind is K.RETRY
    assert uploader.classify_query(404, bad, True).kind is K.FATAL
