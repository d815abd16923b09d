"""The uploader driver's plan of ranges (engine/drivers.py ``_Plan``), without I/O."""

from __future__ import annotations

from nbupload.engine.drivers import _Plan
from nbupload.engine.multifile import FieldLayout
from nbupload.engine.spec import SessionFile
from nbupload.protocols.ranges import RangeSet
from nbupload.protocols.uploader import ChunkAnswer


def test_a_late_incomplete_answer_never_replaces_the_one_that_completed_the_field():
    """Streams' answers can be handled out of order: the chunk that completed the file is
    answered first, an earlier chunk's "not complete yet" after. The plan keeps the complete
    answer (it names where the server stored the file): the task's result lost ``stored``
    once in a loaded test run."""
    plan = _Plan(RangeSet(), FieldLayout.of([SessionFile("file", "odd.bin", 200)]))
    first = plan.take(100)
    second = plan.take(100)
    assert first is not None and second is not None
    whole = ChunkAnswer(True, 200, held=RangeSet([(0, 200)]), complete=True, extra={"stored": "odd.bin"})
    partial = ChunkAnswer(True, 200, held=RangeSet([(0, 100)]), complete=False)
    plan.done(second[0], RangeSet([(100, 200)]), whole)
    plan.done(first[0], RangeSet([(0, 100)]), partial)
    assert plan.all_complete and plan.answers[0] is whole
    assert plan.acked == RangeSet([(0, 200)])


MiB = 1 << 20


def _take_all(plan: _Plan, size: int) -> list[int]:
    """Take until nothing is free; every piece is acknowledged at once. The lengths taken."""
    lengths = []
    ok = ChunkAnswer(True, 200)
    while (got := plan.take(size)) is not None:
        ticket, piece = got
        lengths.append(len(piece))
        plan.done(ticket, RangeSet([(piece.start, piece.end)]), ok)
    return lengths


def test_the_tail_is_cut_into_equal_shares_once():
    """With whole chunks, the last one of a file would go out alone while the other streams
    idle; the tail is split ``streams`` ways once, and that share caps later chunks (cut
    again at every take, each piece would be smaller than the one before)."""
    plan = _Plan(RangeSet(), FieldLayout.of([SessionFile("file", "f.bin", 128 * MiB)]))
    plan.streams = 4
    first = [plan.take(4 * MiB) for _ in range(4)]  # the first round, at the starting size
    assert all(t is not None and len(t[1]) == 4 * MiB for t in first)
    # 112 MiB left, the chunk grew to 32 MiB: four chunks of 28 MiB, not three of 32 and one of 16
    lengths = []
    for _ in range(4):
        got = plan.take(32 * MiB)
        assert got is not None
        lengths.append(len(got[1]))
    assert lengths == [28 * MiB] * 4
    assert plan.take(32 * MiB) is None


def test_one_stream_and_small_tails_are_not_cut():
    one = _Plan(RangeSet(), FieldLayout.of([SessionFile("file", "f.bin", 10 * MiB)]))
    assert _take_all(one, 4 * MiB) == [4 * MiB, 4 * MiB, 2 * MiB]  # streams = 1: whole chunks
    small = _Plan(RangeSet(), FieldLayout.of([SessionFile("file", "f.bin", 3 * MiB)]))
    small.streams = 4
    assert _take_all(small, 4 * MiB) == [1 * MiB] * 3  # shares, but never below MIN_SHARE (1 MiB)
