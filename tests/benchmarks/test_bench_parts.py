"""The benchmark's own parts: the sink's protocol answers and counts, the launcher's
memory and CPU figures, the statistics."""

from __future__ import annotations

import sys

import httpx
import pytest

from benchmarks.proc import run_child
from benchmarks.sink import SinkServer
from benchmarks.stats import ratio, summarize
from nbupload.protocols import uploader, wcs
from nbupload.protocols.multipart import BytesSource


@pytest.fixture
def sink():
    server = SinkServer().start()
    yield server
    server.stop()


def test_sink_answers_the_uploader_query_as_resumable_or_not(sink: SinkServer) -> None:
    headers, body = uploader.prepare_query("b0undary")
    with httpx.Client() as client:
        yes = client.post(sink.url + "/upload", headers=headers, content=body)
        no = client.post(sink.url + "/noresume/upload", headers=headers, content=body)
    assert uploader.process_query_answer(yes.status_code, yes.content, "b0undary").resumable
    assert not uploader.process_query_answer(no.status_code, no.content, "b0undary").resumable


def test_sink_counts_the_file_part_of_chunks_and_appends(sink: SinkServer) -> None:
    data = bytes(range(256)) * 1000
    src = BytesSource(data)
    chunk = uploader.prepare_chunk("b0undary", src, 1000, 5000, fields={"a": "b"})
    first = wcs.prepare_append("ak:sign:policy", src, 0, 5000, key="k")
    append = wcs.prepare_append("ak:sign:policy", src, 5000, len(data) - 5000, key="k")
    with httpx.Client() as client:
        r1 = client.post(sink.url + "/upload", headers=chunk.headers, content=iter(chunk))  # streamed
        r0 = client.post(sink.url + "/append/0", headers=first.headers, content=first.read_all())
        r2 = client.post(sink.url + "/append/5000", headers=append.headers, content=append.read_all())
        again = client.post(sink.url + "/append/5000", headers=append.headers, content=append.read_all())
    assert uploader.process_chunk_answer(r1.status_code, r1.content).ok
    first_answer = wcs.process_append_answer(r0.status_code, r0.headers.multi_items(), r0.content)
    assert first_answer.hash == wcs.etag_of(data[:5000])
    answer = wcs.process_append_answer(r2.status_code, r2.headers.multi_items(), r2.content)
    assert answer.ok and answer.next_position == len(data) and answer.object_type == "Appendable"
    assert answer.hash == wcs.etag_of(data)  # the sink hashes appends so clients can verify them
    late = wcs.process_append_answer(again.status_code, again.headers.multi_items(), again.content)
    assert late.status == 409 and late.next_position == len(data)  # a replayed append is refused
    stats = sink.stats.as_dict()
    assert stats["file_bytes"] == 4000 + len(data) + len(data) - 5000
    assert stats["appends"] == 3 and stats["uploads"] == 4


def test_sink_keeps_an_uploader_sessions_ranges_until_the_file_is_complete(sink: SinkServer) -> None:
    data = bytes(range(256)) * 40
    src = BytesSource(data)
    headers, body = uploader.prepare_query("s3ssion")
    with httpx.Client() as client:
        second = uploader.prepare_chunk("s3ssion", src, 6000, len(data))
        a1 = client.post(sink.url + "/upload", headers=second.headers, content=second.read_all())
        q = client.post(sink.url + "/upload", headers=headers, content=body)
        first = uploader.prepare_chunk("s3ssion", src, 0, 6000)
        a2 = client.post(sink.url + "/upload", headers=first.headers, content=first.read_all())
        q2 = client.post(sink.url + "/upload", headers=headers, content=body)
    one = uploader.process_chunk_answer(a1.status_code, a1.content)
    assert one.ok and not one.complete and str(one.held) == f"6000-{len(data)}"
    held = uploader.process_query_answer(q.status_code, q.content, "s3ssion").held
    assert {k: str(v) for k, v in held.items()} == {"file": f"6000-{len(data)}"}
    done = uploader.process_chunk_answer(a2.status_code, a2.content)
    assert done.ok and done.complete and done.held.covers(len(data))
    assert not uploader.process_query_answer(q2.status_code, q2.content, "s3ssion").ranges_for("file")


def test_sink_reads_chunked_raw_bodies(sink: SinkServer) -> None:
    with httpx.Client() as client:
        r = client.put(sink.url + "/upload", content=iter([b"x" * 70000, b"y" * 3]))
    assert r.status_code == 200
    assert sink.stats.as_dict()["file_bytes"] == 70003


def test_launcher_reports_the_childs_own_peak_memory_and_cpu() -> None:
    small = run_child([sys.executable, "-c", "pass"])
    big = run_child([sys.executable, "-c", "b = bytearray(80 << 20); b[::4096] = b'x' * len(b[::4096])"])
    assert small.ok and big.ok
    assert big.maxrss - small.maxrss > 70 << 20  # the 80 MiB shows, exactly the child's
    assert small.maxrss < 40 << 20  # nothing of this (larger) test process leaks in
    spin = run_child(
        [
            sys.executable,
            "-c",
            "import time; t = time.process_time()\nwhile time.process_time() - t < 0.3: pass",
        ]
    )
    assert spin.cpu >= 0.3


def test_launcher_passes_exit_codes_and_kills_on_timeout() -> None:
    assert run_child(["sh", "-c", "exit 3"]).returncode == 3
    slow = run_child(["sleep", "30"], timeout=0.3)
    assert slow.timed_out and not slow.ok and slow.wall < 10


def test_summary_and_ratio() -> None:
    s = summarize([3.0, 1.0, 2.0, 10.0, 4.0])
    assert (s.median, s.min, s.max, s.n) == (3.0, 1.0, 10.0, 5)
    assert summarize([]) is None
    assert ratio(summarize([6.0]), summarize([3.0])) == 2.0
    assert ratio(None, s) is None


def test_update_doc_replaces_only_between_the_markers(tmp_path) -> None:
    from benchmarks.report import update_doc

    doc = tmp_path / "doc.md"
    doc.write_text("# Doc\n\nbefore\n<!-- latest-results -->\nold table\n<!-- /latest-results -->\nafter\n")
    assert update_doc(doc, "# nbupload benchmark results\n\n- Machine: x\n\n## Targets\n\n| a |\n")
    text = doc.read_text()
    assert "old table" not in text and "- Machine: x" in text and "### Targets" in text
    assert text.startswith("# Doc\n\nbefore\n") and text.endswith("<!-- /latest-results -->\nafter\n")
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    assert not update_doc(bare, "# t\n") and bare.read_text() == "no markers\n"


def test_link_clients_are_chosen_from_their_own_list_and_unknown_names_refused() -> None:
    from benchmarks.cli import _select

    _, links = _select("naive,curl-F", ["links"])
    assert [c.name for c in links] == ["curl-F", "naive"]
    _, links = _select("nbupload", ["links"])
    assert {c.name for c in links} == {
        "nbupload-uploader", "nbupload-uploader-s1", "nbupload-wcs", "nbupload-plain"
    }  # fmt: skip
    with pytest.raises(ValueError, match="naive"):
        _select("naive", ["throughput"])  # the loopback sections have no naive loop


def test_link_targets_follow_the_issue() -> None:
    from benchmarks.links import link_checks

    rows = [
        {"client": "nbupload-uploader", "target": "flow40-rtt20", "ratio": 2.0, "maxrss": {"max": 70 << 20}},
        {"client": "nbupload-uploader", "target": "late40", "ratio": 1.1, "maxrss": {"max": 30 << 20}},
        {"client": "nbupload-plain", "target": "loopback", "ratio": 1.3, "maxrss": None},
        {"client": "nbupload-wcs", "target": "shared100-rtt20", "ratio": 0.8, "maxrss": None},
        {"client": "nbupload-wcs", "target": "flow40-rtt80", "ratio": 0.1, "maxrss": None},  # no target there
        {"client": "httpx", "target": "loopback", "ratio": 3.0, "maxrss": {"max": 99 << 20}},
    ]
    checks = {c["figure"].split(" (")[0] + " " + c["target"]: c["met"] for c in link_checks(
        {"rows": rows, "streams": 4, "scenarios": [], "control": []})}  # fmt: skip
    assert checks == {
        "nbupload-uploader / curl -F >= 2.5x": False,
        "nbupload-uploader / curl -F >= 1.0x": True,
        "nbupload-plain / curl -F >= 1.2x": True,
        "nbupload-wcs / curl -F >= 0.9x": False,
        "peak RSS nbupload-uploader <= 68 MiB": False,  # 64 MiB + 4 streams x 1 MiB
    }
