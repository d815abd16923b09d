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
