"""What a multi-file session's fields are read from (engine/drivers.py ``_field_source``), without
I/O beyond local files: the file that holds the field (so the wire path can ``sendfile`` it), or
a shifted reader when no one part of the source is the field."""

from __future__ import annotations

import os

from nbupload.engine.drivers import _field_source, _FieldSource
from nbupload.engine.multifile import ConcatSource
from nbupload.protocols.multipart import BytesSource, FileSource


def test_a_path_field_is_its_own_file_and_a_bytes_field_its_own_bytes(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_RDONLY)
    try:
        disk, empty, mem = FileSource(fd), BytesSource(b""), BytesSource(b"abcdef")
        whole = ConcatSource([disk, empty, mem])
        assert _field_source(whole, 0, 0, 10) is disk  # wire sees a FileSource: sendfile
        assert _field_source(whole, 1, 10, 0) is empty
        assert _field_source(whole, 2, 10, 6) is mem  # no descriptor: read as before
        assert _field_source(whole, 2, 10, 6).pread(3, 2) == b"cde"
    finally:
        os.close(fd)


def test_a_field_no_one_part_holds_is_read_through_the_whole_at_shifted_offsets():
    whole = ConcatSource([BytesSource(b"0123"), BytesSource(b"4567")])
    assert whole.part_at(1, 3, 5) is None and whole.part_at(5, 0, 0) is None  # wrong place, no such part
    odd = _field_source(whole, 0, 2, 4)
    assert isinstance(odd, _FieldSource) and odd.pread(4, 0) == b"2345"
    plain = _field_source(BytesSource(b"0123456789"), 0, 3, 4)  # not a concatenation at all
    assert isinstance(plain, _FieldSource) and plain.pread(2, 1) == b"45"
