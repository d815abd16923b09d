"""Multi-file uploader sessions (PROTOCOLS.md A7), pure: field names, the plain body of several
files, the query answer with one entry per field, and the layout of a session's bytes."""

from __future__ import annotations

import pytest

from nbupload.engine.multifile import ConcatSource, FieldLayout, check_session_items, session_label
from nbupload.engine.spec import SessionFile
from nbupload.errors import FileFieldError
from nbupload.protocols import uploader
from nbupload.protocols.errors import ProtocolError
from nbupload.protocols.multipart import BytesSource
from nbupload.protocols.ranges import RangeSet

B = "----nbuploadtest0123456789"


def _parts(body: bytes) -> list[tuple[str, bytes]]:
    """``(Content-Disposition, data)`` of every part of a multipart body, in order."""
    out = []
    for part in body.split(b"--" + B.encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part[2:].partition(b"\r\n\r\n")
        disp = next(h for h in head.decode().split("\r\n") if h.lower().startswith("content-disposition"))
        out.append((disp, data[:-2]))
    return out


@pytest.mark.parametrize("name", ["photo", "doc", "files[]", "a.b-c_d", "фото", "x" * 100])
def test_usable_field_names(name):
    assert uploader.check_field_name(name) == name


@pytest.mark.parametrize("name", ["", "a b", 'a"b', "a=b", "a;b", "a\nb", "a\x00", "x" * 101, "a/b"])
def test_unusable_field_names_are_refused_with_what_to_use(name):
    with pytest.raises(ProtocolError, match="not a usable form field name"):
        uploader.check_field_name(name)


def test_plain_body_carries_every_file_part_and_the_data_fields_once():
    files = [
        uploader.FileField("photo", "a.jpg", BytesSource(b"JPEGDATA"), "image/jpeg"),
        uploader.FileField("doc", "b.pdf", BytesSource(b"%PDF-1.7 x")),
        uploader.FileField("empty", "e.txt", BytesSource(b"")),
    ]
    enc = uploader.prepare_plain_files(B, files, fields={"user": "ann", "note": "two"})
    body = enc.read_all()
    assert len(body) == enc.content_length
    parts = _parts(body)
    assert [d for d, _ in parts[:2]] == [
        'Content-Disposition: form-data; name="user"',
        'Content-Disposition: form-data; name="note"',
    ]
    assert [data for _, data in parts] == [b"ann", b"two", b"JPEGDATA", b"%PDF-1.7 x", b""]
    for (disp, _), f in zip(parts[2:], files, strict=True):
        assert f'name="{f.name}"' in disp and f'filename="{f.filename}"' in disp
        assert "range=" not in disp  # plain mode: whole files, no range (A6)
    assert b"Content-Type: image/jpeg" in body


def test_each_chunk_carries_one_fields_own_range():
    doc = BytesSource(b"0123456789")
    body = uploader.prepare_chunk(
        B, doc, 4, 8, name="doc", filename="b.pdf", fields={"user": "ann"}
    ).read_all()
    parts = _parts(body)
    assert len(parts) == 2 and parts[0][1] == b"ann"
    disp, data = parts[1]
    assert data == b"4567" and 'name="doc"' in disp and 'range="4-8/10"' in disp


def test_query_answer_lists_each_field_and_the_client_reads_each():
    answer = uploader.format_query_answer(
        B, {"photo": RangeSet([(0, 100), (200, 300)]), "doc": RangeSet(), "empty": RangeSet()}, ["user"]
    )
    got = uploader.process_query_answer(200, answer, B)
    assert got.resumable
    assert got.ranges_for("photo") == RangeSet([(0, 100), (200, 300)])
    assert got.ranges_for("doc") == RangeSet() and "empty" in got.held
    assert got.ranges_for("missing") == RangeSet()
    # the seed's own style: unquoted keys, the file list nested one level too deep
    lenient = f"{{protocol:'uploader',support:true,boundary:'{B}',file:[[{{name:'doc',range:'0-5'}}]]}}"
    assert uploader.process_query_answer(200, lenient, B).ranges_for("doc") == RangeSet([(0, 5)])


def test_layout_maps_task_ranges_to_each_field_and_back():
    files = (SessionFile("a", "a", 10), SessionFile("z", "z", 0), SessionFile("b", "b", 5))
    layout = FieldLayout.of(files)
    assert layout.total == 15 and layout.bases == (0, 10, 10)
    task = RangeSet([(2, 12)])
    assert layout.of_field(0, task) == RangeSet([(2, 10)])
    assert layout.of_field(2, task) == RangeSet([(0, 2)])
    assert layout.of_field(1, task) == RangeSet()
    assert layout.held({"a": RangeSet([(2, 10)]), "b": RangeSet([(0, 2), (4, 99)])}) == RangeSet(
        [(2, 12), (14, 15)]
    )


def test_concat_source_reads_across_files():
    src = ConcatSource([BytesSource(b"abc"), BytesSource(b""), BytesSource(b"defg")])
    assert src.size == 7
    assert src.pread(7, 0) == b"abcdefg"
    assert src.pread(3, 2) == b"cde"
    assert src.pread(10, 5) == b"fg"


def test_session_items_rules():
    assert check_session_items({"a": "x", "b": "y"}) == [("a", "x"), ("b", "y")]
    with pytest.raises(FileFieldError, match="given twice"):
        check_session_items([("a", "x"), ("a", "y")])
    with pytest.raises(FileFieldError, match="not a usable form field name"):
        check_session_items({"a b": "x"})
    with pytest.raises(FileFieldError, match="at least one"):
        check_session_items({})
    assert session_label(SessionFile(n, n + ".txt", 1) for n in "abcde") == "a.txt, b.txt, c.txt (+2)"
