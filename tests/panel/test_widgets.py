"""The ipywidgets panel without a frontend: classes, buttons per state, repr, form."""

from __future__ import annotations

from nbupload.engine.state import TaskError, TaskSnapshot, TaskState
from nbupload.panel.widgets import Offer, TaskRow, UploadForm, UploadPanel, complete_path
from nbupload.protocols.ranges import RangeSet


def snap(**kw):
    base = dict(
        id="ab12",
        name="data.bin",
        protocol="uploader",
        url="http://h/u",
        state=TaskState.UPLOADING,
        total=1000,
    )
    base.update(kw)
    return TaskSnapshot(**base)


class Recorder:
    def __init__(self):
        self.actions = []
        self.requests = []

    def task_action(self, task_id, action):
        self.actions.append((task_id, action))

    def start_from_form(self, request):
        self.requests.append(request)
        if request.get("url") == "bad":
            raise ValueError("bad URL")
        return "new1"

    def resume_offer(self, task_id):
        self.actions.append((task_id, "offer"))

    def forget_offer(self, task_id):
        self.actions.append((task_id, "forget"))

    def clear_finished(self, task_id):
        self.actions.append((task_id, "clear"))


def enabled(row):
    return {a for a, b in row.buttons.items() if not b.disabled}


def shown(row):
    return {a for a, b in row.buttons.items() if b.layout.visibility != "hidden"}


def test_row_classes_buttons_and_updates():
    rec = Recorder()
    row = TaskRow(snap(acked=100, ranges=RangeSet.parse("0-100")), rec.task_action)
    assert "nbupload-row" in row._dom_classes and "nbupload-task-ab12" in row._dom_classes
    assert all(f"nbupload-{a}" in b._dom_classes for a, b in row.buttons.items())
    assert enabled(row) == {"pause", "cancel"}
    assert row.bar.value.count("nbupload-segment") == 1
    row.buttons["pause"].click()
    assert rec.actions == [("ab12", "pause")]

    row.update(snap(state=TaskState.PAUSED, acked=600, ranges=RangeSet.parse("0-100,500-1000")))
    assert enabled(row) == {"resume", "cancel"}
    assert row.bar.value.count("nbupload-segment") == 2 and 'data-state="paused"' in row.state.value

    row.update(snap(state=TaskState.FAILED, error=TaskError("File exceeded max_file_size", code=4002)))
    assert enabled(row) == {"cancel"}  # 4002 is not retryable: Retry stays disabled
    row.update(snap(state=TaskState.FAILED, error=TaskError("server busy", code=4001, retryable=True)))
    assert enabled(row) == {"retry", "cancel"}
    row.update(snap(state=TaskState.FAILED, error=TaskError("File exceeded max_file_size", code=4002)))
    assert (
        'class="nbupload-error"' in row.error.value and "4002 File exceeded max_file_size" in row.error.value
    )

    row.update(snap(state=TaskState.DONE, acked=1000, ranges=RangeSet.parse("0-1000")))
    # a finished row drops its four buttons for one that clears it
    assert enabled(row) == shown(row) == {"clear"} and row.error.value == ""
    row.buttons["clear"].click()
    assert rec.actions[-1] == ("ab12", "clear")
    assert repr(row).startswith("data.bin [ab12] 100%|####################| 1000 B/1000 B done")
    bundle = row._repr_mimebundle_()
    assert bundle["text/plain"].startswith("data.bin [ab12] 100%")


def test_panel_summary_rows_and_offers():
    rec = Recorder()
    rows = [TaskRow(snap(id=f"t{i}", acked=100 * i), rec.task_action) for i in range(3)]
    shown: list[TaskRow] = []
    panel = UploadPanel(rec, lambda: shown)
    assert "No uploads yet" in panel.summary.value
    shown.extend(rows)
    panel.refresh()
    assert panel.rows_box.children == tuple(rows)
    assert "3 tasks: 3 uploading" in panel.summary.value
    assert repr(panel).splitlines()[0].startswith("3 tasks:") and len(repr(panel).splitlines()) == 4
    panel.set_offers(
        [
            Offer("old1", "a.bin", "http://h/u", "a.bin [old1]"),
            Offer(
                "old2",
                "b.bin",
                "http://h/u",
                "b.bin [old2]  - its server is not running",
                note="its server is not running",
                resumable=False,
            ),
        ]
    )
    lines = panel.offers.children[1:3]
    resume2, forget2 = lines[1].children[0].children
    assert resume2.disabled and "nbupload-offer-dead" in lines[1].children[1].value
    forget2.click()
    lines[0].children[0].children[0].click()
    every, forget_dead = panel.offers.children[-1].children
    every.click()
    forget_dead.click()
    assert rec.actions[-4:] == [("old2", "forget"), ("old1", "offer"), (None, "offer"), (None, "forget")]


def test_a_click_shows_pending_at_once_until_the_engine_moves():
    rec = Recorder()
    row = TaskRow(snap(), rec.task_action)
    row.set_pending("pause")
    assert "pausing…" in row.state.value and enabled(row) == set()
    row.update(snap(acked=10))  # still uploading: the click is still pending
    assert "pausing…" in row.state.value
    row.update(snap(state=TaskState.PAUSED))
    assert row.pending is None and "pausing" not in row.state.value and enabled(row) == {"resume", "cancel"}


def test_every_row_carries_its_own_stylesheet():
    row = TaskRow(snap(), Recorder().task_action)
    style = row.children[0]
    assert "nbupload-style" in style._dom_classes and ".nbupload-bar{" in style.value


def test_form_submits_paths_and_picked_files_and_shows_errors(tmp_path):
    rec = Recorder()
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    form = UploadForm(rec, url="http://srv/upload")
    form.path.value = str(tmp_path) + "/x"
    assert form.path.options == (str(tmp_path) + "/x.bin",)
    form.path.value = str(f)
    form.fields.value = "a=1\nb=2"
    form.start.click()
    req = rec.requests[-1]
    assert req["source"] == str(f) and req["url"] == "http://srv/upload" and req["filename"] == "x.bin"
    assert req["fields"] == "a=1\nb=2" and "started new1" in form.message.value
    form.secret_key.value = "s3cret"
    form.start.click()
    assert rec.requests[-1]["secret_key"] == "s3cret" and form.secret_key.value == ""
    assert "s3cret" not in form.message.value and "secret key cleared" in form.message.value
    form.url.value = "bad"
    form.start.click()
    assert "nbupload-error" in form.message.value and "bad URL" in form.message.value
    form.url.value = "http://srv/upload"
    # a picked file, as the browser streams it (tests/panel/test_picker.py has the protocol)
    form.picker.core.store.root = tmp_path / "spool"
    form.picker._handle_custom_msg(
        {"kind": "begin", "file": "f1", "name": "p.txt", "size": 2, "last_modified": 0}, []
    )
    form.picker._handle_custom_msg({"kind": "slice", "file": "f1", "offset": 0}, [memoryview(b"hi")])
    assert rec.requests[-1]["source"].endswith(".data") and rec.requests[-1]["filename"] == "p.txt"
    assert form.picker.entries[0]["task"] == "new1"


def test_complete_path(tmp_path):
    (tmp_path / "alpha.csv").write_text("x")
    (tmp_path / "alps").mkdir()
    (tmp_path / ".hidden").write_text("x")
    assert complete_path(str(tmp_path) + "/al") == [str(tmp_path) + "/alpha.csv", str(tmp_path) + "/alps/"]
    assert complete_path(str(tmp_path) + "/") == [str(tmp_path) + "/alpha.csv", str(tmp_path) + "/alps/"]
    assert complete_path(str(tmp_path / "nope") + "/x") == []


def test_plain_text_of_a_big_panel_is_not_cut():
    rec = Recorder()
    rows = [TaskRow(snap(id=f"t{i}", name=f"file-{i}.bin"), rec.task_action) for i in range(5)]
    panel = UploadPanel(rec, lambda: rows)
    text = panel._repr_mimebundle_()["text/plain"]
    assert len(text.splitlines()) == 6 and "file-4.bin [t4]" in text


def test_an_offer_another_kernel_runs_can_be_neither_resumed_nor_forgotten_here():
    panel = UploadPanel(Recorder(), list)
    panel.set_offers(
        [
            Offer(
                "busy",
                "b.bin",
                "http://h/u",
                "b.bin [busy]  - another kernel or process is running it",
                note="another kernel or process is running it",
                resumable=False,
                locked=True,
            )
        ]
    )
    resume, forget = panel.offers.children[1].children[0].children
    assert resume.disabled and forget.disabled
    assert len(panel.offers.children) == 2  # no "Resume all" / "Forget unresumable" line for it
