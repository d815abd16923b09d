"""Pure formatting: segment geometry, HTML classes, the tqdm-like text line, the summary."""

from __future__ import annotations

import html
import re

from hypothesis import given
from hypothesis import strategies as st

from nbupload.engine.state import TaskError, TaskSnapshot, TaskState
from nbupload.panel.format import (
    bar_html,
    css_token,
    error_html,
    progress_html,
    segments,
    stats_text,
    summary_text,
    text_bar,
    text_line,
)
from nbupload.protocols.ranges import RangeSet
from nbupload.protocols.uploader import process_chunk_answer


def snap(**kw):
    base = dict(
        id="t1", name="data.bin", protocol="uploader", url="http://h/u", state=TaskState.UPLOADING, total=1000
    )
    base.update(kw)
    return TaskSnapshot(**base)


def test_segments_follow_ranges_not_a_percentage():
    segs = segments(RangeSet.parse("0-100,500-750"), 1000)
    assert [(s.start, s.end) for s in segs] == [(0, 100), (500, 750)]
    assert [(s.left, s.width) for s in segs] == [(0.0, 0.1), (0.5, 0.25)]


def test_segments_clip_to_total_and_empty_total():
    assert [(s.start, s.end) for s in segments(RangeSet.parse("900-2000"), 1000)] == [(900, 1000)]
    assert segments(RangeSet.parse("0-10"), 0) == []


def test_min_width_keeps_tiny_ranges_visible_inside_the_bar():
    (seg,) = segments(RangeSet.parse("999-1000"), 10**9, min_width=0.002)
    assert seg.width == 0.002
    (last,) = segments(RangeSet.parse(f"{10**9 - 1}-{10**9}"), 10**9, min_width=0.01)
    assert last.left + last.width <= 1.0 + 1e-12


def test_many_ranges_are_merged_across_the_smallest_gaps():
    spans = [(i * 10, i * 10 + 5) for i in range(1000)]
    spans[500] = (5000, 5009)  # gap of 1 to the next range: merged first
    segs = segments(RangeSet(spans), 10_000, max_segments=100)
    assert len(segs) == 100
    assert segs[0].start == 0 and segs[-1].end == 9995
    covered = RangeSet((s.start, s.end) for s in segs)
    assert all(covered.contains(a, b) for a, b in spans)


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 500)), max_size=60), st.integers(1, 20_000))
def test_segments_stay_inside_the_bar_and_in_order(pairs, total):
    ranges = RangeSet((a, a + n) for a, n in pairs)
    segs = segments(ranges, total, min_width=0.001, max_segments=20)
    assert len(segs) <= 20
    for s in segs:
        assert 0.0 <= s.left <= 1.0 and s.width >= 0.0 and s.left + s.width <= 1.0 + 1e-9
    assert [s.start for s in segs] == sorted(s.start for s in segs)
    assert sum(s.end - s.start for s in segs) >= ranges.clip(total).covered()


def test_bar_html_has_one_segment_div_per_range_and_data_attributes():
    html = bar_html(snap(acked=350, ranges=RangeSet.parse("0-100,500-750")))
    assert html.count('class="nbupload-segment"') == 2
    assert 'data-acked="350"' in html and 'data-total="1000"' in html and 'data-state="uploading"' in html
    assert re.search(r"left:50%;width:25%", html)


def test_done_empty_file_shows_a_full_bar():
    html = bar_html(snap(total=0, state=TaskState.DONE))
    assert html.count("nbupload-segment") == 1 and "width:100%" in html


def test_error_is_code_and_message_styled_as_error():
    s = snap(state=TaskState.FAILED, error=TaskError("File exceeded max_file_size", code=4002, status=413))
    html = error_html(s)
    assert 'class="nbupload-error"' in html and 'data-code="4002"' in html
    assert "4002 File exceeded max_file_size" in html
    assert text_line(s).endswith("failed: 4002 File exceeded max_file_size (HTTP 413)")
    assert error_html(snap()) == ""


def test_error_html_escapes_server_text():
    s = snap(state=TaskState.FAILED, error=TaskError("<script>x</script>", code=400))
    assert "<script>" not in error_html(s)


def test_text_line_is_tqdm_like_and_stable():
    s = snap(acked=500, ranges=RangeSet.parse("0-500"), rate=1024.0, eta=3.0)
    assert (
        text_line(s) == "data.bin [t1]  50%|##########          | 500 B/1000 B 1.00 KiB/s ETA 0:03 uploading"
    )
    assert text_bar(1.5, 4) == "|####|" and text_bar(-1, 4) == "|    |"
    paused = snap(acked=500, state=TaskState.PAUSED)
    assert text_line(paused).endswith("500 B/1000 B paused")


def test_text_line_shows_the_current_chunk_size_while_running():
    running = snap(acked=500, rate=1024.0, eta=3.0, chunk_size=8 << 20)
    assert text_line(running).endswith("1.00 KiB/s ETA 0:03 chunk 8.00 MiB uploading")
    done = snap(acked=1000, state=TaskState.DONE, chunk_size=8 << 20)
    assert "chunk" not in text_line(done)


def test_stats_text_shows_rate_and_eta_only_while_moving():
    assert "ETA 0:03" in stats_text(snap(acked=10, rate=100.0, eta=3.0))
    done = stats_text(snap(acked=1000, state=TaskState.DONE, started_at=10.0, finished_at=75.0))
    assert done.endswith("in 1:05") and "100%" in done


def test_summary_counts_states_and_bytes():
    snaps = [
        snap(id="a", acked=1000, state=TaskState.DONE),
        snap(id="b", acked=200, rate=2048.0),
        snap(id="c", state=TaskState.FAILED),
    ]
    # the failed task's bytes are not on their way: not in the total
    assert summary_text(snaps) == "3 tasks: 1 uploading, 1 failed, 1 done - 1.17 KiB / 1.95 KiB  2.00 KiB/s"
    assert summary_text([]) == ""


def test_css_token():
    assert css_token("ab/12 x") == "ab-12-x" and css_token("") == "x"


def test_error_text_says_each_thing_once():
    # As the engine builds it from the server's answer (ChunkAnswer.text: no code in the message).
    answer = process_chunk_answer(
        413, b'{"result":"ERROR","code":4002,"message":"File exceeded max_file_size: 3 bytes over"}'
    )
    err = TaskError(answer.text, answer.code, 413)
    assert text_line(snap(state=TaskState.FAILED, error=err)).endswith(
        "failed: 4002 File exceeded max_file_size: 3 bytes over (HTTP 413)"
    )
    plain = TaskError("connection refused")
    assert text_line(snap(state=TaskState.FAILED, error=plain)).endswith("failed: connection refused")


def test_a_retried_error_is_a_warning_until_the_task_fails():
    err = TaskError("connection reset", retryable=True)
    assert 'class="nbupload-warning"' in error_html(snap(error=err))
    assert "retrying after: connection reset" in error_html(snap(error=err))
    assert error_html(snap(state=TaskState.DONE, error=err)) == ""
    assert 'class="nbupload-error"' in error_html(snap(state=TaskState.FAILED, error=err))


def test_progress_html_holds_the_bar_and_the_stats_in_one_value():
    s = snap(acked=10, rate=100.0, eta=3.0)
    out = progress_html(s)
    assert bar_html(s) in out and html.escape(stats_text(s)) in out
    assert out.startswith('<div class="nbupload-progress">')


def test_sizes_and_rates_are_always_in_plain_notation():
    from nbupload.units import format_rate, format_size

    assert format_size(1000 * 2**20) == "1000 MiB"
    assert format_rate(1000 * 1024) == "1000 KiB/s"
    assert format_rate(1.02e3 * 1024) == "1020 KiB/s"
    for n in [
        0,
        1,
        999,
        1023,
        1024,
        10 * 1024 - 1,
        100 * 1024 - 1,
        1000 * 1024,
        1023.9 * 1024,
        5 * 2**30,
        3 * 2**50,
    ]:
        assert "e+" not in format_size(n) and "e-" not in format_size(n), n


def test_a_click_shows_its_pending_state_and_retrying_hides_rate_and_eta():
    from nbupload.engine.state import TaskError
    from nbupload.panel.format import state_html

    pending = state_html(snap(), "pausing…")
    assert (
        'data-pending="pausing…"' in pending
        and ">pausing…<" in pending
        and 'data-state="uploading"' in pending
    )
    retrying = snap(rate=4096.0, eta=3.0, error=TaskError("connection reset", retryable=True))
    assert stats_text(retrying).endswith("retrying") and "/s" not in stats_text(retrying)
    assert "ETA" not in text_line(retrying)


def test_the_stylesheet_uses_theme_variables_and_styles_every_end_state():
    from nbupload.panel.format import ROW_CSS

    for var in ("--jp-layout-color3", "--jp-brand-color1", 'data-jp-theme-light="false"', "container-type"):
        assert var in ROW_CSS
    for state in ("done", "paused", "failed", "cancelled"):
        assert f'.nbupload-bar[data-state="{state}"] .nbupload-segment' in ROW_CSS
