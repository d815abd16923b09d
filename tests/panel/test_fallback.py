"""The text a saved notebook shows for a row or the panel once its kernel is gone."""

from __future__ import annotations

from nbupload.engine.state import TaskError, TaskSnapshot, TaskState
from nbupload.panel.fallback import fallback_bundle, panel_fallback_text, row_fallback_text


def snap(**kw):
    base = dict(id="ab12", name="data.csv", protocol="uploader", url="http://h/u", total=12 << 20)
    base.update(kw)
    return TaskSnapshot(**base)


def test_row_text_says_the_last_state_in_words():
    assert (
        row_fallback_text(snap(state=TaskState.DONE, acked=12 << 20)) == "nbupload: data.csv — done, 12.0 MiB"
    )
    running = row_fallback_text(snap(state=TaskState.UPLOADING, acked=2 << 20))
    assert running == "nbupload: data.csv — uploading at 2.00 MiB of 12.0 MiB when this cell ended"
    failed = snap(state=TaskState.FAILED, acked=0, error=TaskError("File exceeded max_file_size", code=4002))
    assert row_fallback_text(failed).startswith("nbupload: data.csv — failed at 0 B of 12.0 MiB: 4002 File")


def test_panel_text_has_a_summary_and_a_line_per_task():
    text = panel_fallback_text(
        [snap(state=TaskState.DONE, acked=12 << 20), snap(id="cd", name="b.bin", state=TaskState.QUEUED)]
    )
    lines = text.splitlines()
    assert lines[0].startswith("nbupload panel: 2 tasks:") and len(lines) == 3
    assert lines[1] == "  data.csv — done, 12.0 MiB"
    assert panel_fallback_text([]) == "nbupload panel: no uploads yet"


def test_bundle_escapes_the_text_and_hides_only_a_failed_widget_view():
    bundle = fallback_bundle("nbupload: <b>.csv — done")
    assert bundle["text/plain"] == "nbupload: <b>.csv — done"
    html = bundle["text/html"]
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert (
        'class="nbupload-fallback"' in html and ".jp-OutputArea-output.jupyter-widgets{display:none}" in html
    )
