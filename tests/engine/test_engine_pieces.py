"""Body pieces adapt: big on a fast link, small on a slow one (pause/cancel stay prompt)."""

from __future__ import annotations

import types

from nbupload.engine import transport
from nbupload.engine.transport import MAX_PIECE, PIECE_TARGET, _stream
from nbupload.protocols.multipart import BytesSource, FilePart, MultipartEncoder

KiB = 1024


def test_pieces_grow_on_a_fast_link_and_shrink_on_a_slow_one(monkeypatch):
    # The stream's clock is the test's: a busy machine cannot make the "fast" link look slow.
    now = [0.0]
    monkeypatch.setattr(transport, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    data = bytes(range(256)) * (40 * 4 * KiB)  # 40 MiB
    enc = MultipartEncoder([FilePart("file", "f", BytesSource(data))], "b", 64 * KiB)
    seen = bytearray()
    sizes = []
    file_start = enc.content_length - len(b"\r\n--b--\r\n") - len(data)  # as post() locates it
    stream = _stream(enc, lambda: None, 60.0, file_start, len(data), seen.extend)
    for piece in stream:
        sizes.append(len(piece))
        if len(sizes) > 12:  # the link turns slow: each piece takes longer than the target
            now[0] += PIECE_TARGET * 1.5
        if len(sizes) > 20:
            break
    file_sizes = sizes[1:]  # the first item is the part's small head
    assert max(file_sizes[:12]) == MAX_PIECE  # grew while pieces left at once
    assert file_sizes[-1] < MAX_PIECE // 8  # shrank once each took too long
    assert bytes(seen) == data[: len(seen)]  # every byte reported, in order
