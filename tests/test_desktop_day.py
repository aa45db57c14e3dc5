"""Issue 14, a day with the app: each fault a new user tripped on, pinned in a real (offscreen) window."""
# ruff: noqa: F811 - the fixtures of tests/test_desktop.py are imported by name

from __future__ import annotations

import shutil
import threading
from dataclasses import replace

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings, QSize, Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QLineEdit, QSpinBox

from core.config import Settings, setting_fields
from core.engine import Engine
from core.jobs import queue_for
from desktop.index_widgets import JobStatus
from desktop.main_window import MainWindow, first_size
from desktop.navigation import Breadcrumb
from desktop.preferences import Choices, Preferences
from desktop.search_view import HINT_EMPTY_INDEX
from desktop.settings_dialog import FolderList, SettingsDialog
from desktop.worker import Worker
from tests.test_desktop import (  # noqa: F401 - fixtures are found by name
    WAIT_MS,
    drop,
    file_mime,
    indexed_data,
    make_window,
    mixed_folder,
    prefs,
    search_by_drop,
    window,
)


# == major ==========================================================================================
def test_eight_refines_never_widen_the_window(qtbot, window, photo_dir):
    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    width = window.minimumSizeHint().width()
    for n in range(8):
        hit = window.model.hits()[1]
        name = f"holiday in the mountains, the long walk up {n:02d}.jpg"
        long_name = replace(hit.record, paths=(f"{hit.record.folder}/{name}",))
        with qtbot.waitSignal(window.results_shown, timeout=WAIT_MS):
            window.refine(long_name, hit)
        assert window.minimumSizeHint().width() <= width, f"after {n + 1} refines"
    assert len(window.breadcrumb.labels()) == 6 and window.breadcrumb.labels()[-1].endswith("07.jpg")
    assert window.minimumSizeHint().width() <= 640  # half of a 1,280 px screen (issue 14, minor)


def test_the_end_of_a_run_stays_said_while_a_query_is_on_screen(qtbot, make_window, tmp_path, photo_dir,
                                                               indexed_data):
    data = tmp_path / "data"
    shutil.copytree(indexed_data, data)
    window = make_window(data)
    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    folder = mixed_folder(tmp_path / "new", photo_dir)
    with qtbot.waitSignal(window.results_shown, timeout=WAIT_MS):  # the re-search after the run
        window.start_index([str(folder)])
    qtbot.wait(200)
    status = window.job_status
    assert status.isVisible() and status.label.text().startswith("Indexing finished: 6 indexed")
    assert status.details_button.isVisible() and status.close_button.isVisible()
    status.close_button.click()
    assert not status.isVisible()


def test_an_empty_index_says_so_and_offers_index_folder(qtbot, make_window, tmp_path, photo_dir, monkeypatch):
    window = make_window()
    qtbot.waitUntil(lambda: window.image_count == 0, timeout=WAIT_MS)
    assert window.view.placeholder == HINT_EMPTY_INDEX and window.view.placeholder_button.isVisible()
    with qtbot.waitSignal(window.results_shown, timeout=WAIT_MS) as shown:
        drop(window.pane, file_mime(photo_dir / "coffee.jpg"))
    assert shown.args == [0] and window.view.placeholder == HINT_EMPTY_INDEX
    assert "widen" not in window.view.placeholder
    button = window.view.placeholder_button
    assert button.isVisible() and button.text() == "Index Folder…"
    folder = mixed_folder(tmp_path / "first", photo_dir)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    with qtbot.waitSignal(window.index_finished, timeout=WAIT_MS):
        button.click()
    qtbot.waitUntil(lambda: window.model.rowCount() == 6, timeout=WAIT_MS)  # the query is searched again
    assert not button.isVisible()


@pytest.fixture
def locked_window(qtbot, tmp_path, shared_extractor, indexed_data):
    data = tmp_path / "data"
    shutil.copytree(indexed_data, data)
    prefs = Preferences(QSettings(str(tmp_path / "prefs.ini"), QSettings.Format.IniFormat))
    base = Settings(data_dir=str(data), weights="random", api_port=0)
    window = MainWindow(base, prefs, locked={"weights", "backend"}, extractor=shared_extractor,
                        thumbnail_dir=tmp_path / "thumbs", serve_api=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.engine is not None and window.model_ready, timeout=WAIT_MS)
    yield window
    window.close()


def test_locked_settings_are_read_only_and_say_why(qtbot, locked_window):
    window = locked_window
    window.open_settings()
    dialog = window.settings_dialog
    assert dialog.weights.isReadOnly() and not dialog.weights.isEnabled()
    assert not dialog.browse_weights.isEnabled() and not dialog.imagenet_button.isEnabled()
    assert not dialog.backend.isEnabled() and dialog.backend.focusPolicy() == Qt.FocusPolicy.NoFocus
    assert dialog.data_dir.isEnabled() and dialog.browse_data.isEnabled()
    note = next(label for label in dialog.findChildren(type(dialog.error)) if label.text().startswith("Fixed"))
    assert "model weights" in note.text() and "--" not in note.text() and "IMAGE_SEARCH" not in note.text()
    before = dialog.choices()
    for key in (Qt.Key.Key_End, Qt.Key.Key_Home, Qt.Key.Key_Down, Qt.Key.Key_PageDown):
        qtbot.keyClick(dialog, key)
    assert dialog.choices() == before  # End once switched the backend to Elasticsearch
    dialog.reject()


def test_a_change_that_reopens_the_index_clears_what_belongs_to_the_old_one(qtbot, locked_window, tmp_path,
                                                                            photo_dir):
    window = locked_window
    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    window.open_settings()
    dialog = window.settings_dialog
    dialog.data_dir.setText(str(tmp_path / "another"))
    with qtbot.waitSignal(window.engine_ready, timeout=WAIT_MS):
        dialog.accept()
    assert window.model.rowCount() == 0 and window.search.history.current is None
    assert window.pane.caption.text() == "" and window.breadcrumb.labels() == []
    qtbot.waitUntil(lambda: window.image_count == 0, timeout=WAIT_MS)
    assert window.act.index.isEnabled() and window.view.placeholder == HINT_EMPTY_INDEX


def test_another_model_is_explained_without_command_line_words(qtbot, make_window, tmp_path, indexed_data):
    data = tmp_path / "data"
    shutil.copytree(indexed_data, data)
    weights = tmp_path / "other.h5"
    weights.write_bytes(b"weights of some other model")
    window = make_window(data, wait=False, weights=str(weights))
    qtbot.waitUntil(lambda: window.errors.box is not None and window.errors.box.isVisible(), timeout=WAIT_MS)
    text = window.errors.box.text() + window.errors.box.informativeText()
    assert "--" not in text and "IMAGE_SEARCH" not in text and "Settings" in text
    assert not window.act.index.isEnabled() and window.status_index.text() == "No index"
    assert window.view.placeholder.startswith("No index is open") and window.view.placeholder_button.isVisible()
    assert window.view.placeholder_button.text() == "Settings…"


# == one job queue ==================================================================================
def test_a_job_from_another_front_end_shows_with_cancel(qtbot, make_window, tmp_path, photo_dir):
    folder = mixed_folder(tmp_path / "api", photo_dir, copies=5)
    window = make_window(batch_size=4)
    queue = queue_for(window.engine)
    assert window.jobs.queue is queue
    with qtbot.waitSignal(window.index_progressed, timeout=WAIT_MS):
        threading.Thread(target=queue.submit_index, args=([str(folder)],)).start()  # as the HTTP API would
    assert window.job_status.isVisible() and window.job_status.cancel_button.isVisible()
    assert not window.act.index.isEnabled()
    with qtbot.waitSignal(window.index_finished, timeout=WAIT_MS) as finished:
        window.job_status.cancel_button.click()
    assert finished.args[0]["state"] == "cancelled"
    assert window.job_status.label.text().startswith("Indexing cancelled at ")
    assert window.act.index.isEnabled()


def test_a_dropped_file_is_loaded_previewed_and_embedded_in_one_worker_call(qtbot, window, photo_dir):
    calls = []
    run = window.search.run
    window.search.run = lambda job, done, failed: (calls.append(job), run(job, done, failed))
    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    assert len(calls) == 2  # load + preview + embed, then the kNN search
    assert window.model.hits()[0].score == pytest.approx(1.0, abs=1e-4)


# == minor ==========================================================================================
def test_time_left_only_once_estimable_and_no_cancel_at_100_percent(qapp):
    status = JobStatus()
    job = {"kind": "index", "state": "running", "paths": ["/a"], "done": 0, "total": 58, "eta_s": 0.0,
           "current": None}
    status.start(job)
    status.update_progress(job)
    assert status.label.text() == "Indexing 0 of 58"
    status.update_progress({**job, "done": 16, "eta_s": 42.0})
    assert status.label.text() == "Indexing 16 of 58 · 42 s left"
    status.update_progress({**job, "done": 58, "eta_s": 0.0})
    assert status.label.text() == "Indexing 58 of 58" and status.cancel_button.isHidden()


def test_plurals_disabled_actions_esc_and_ctrl_f(qtbot, window, photo_dir):
    assert not window.act.back.isEnabled() and not window.act.forward.isEnabled()
    assert not window.act.similar.isEnabled()
    window.controls.k.setValue(1)
    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    assert window.result_count.text().startswith("1 result ·")
    window.view.setCurrentIndex(window.model.index(0))
    assert window.act.similar.isEnabled()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window.view, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.controls.text_filter.hasFocus()
    qtbot.keyClicks(window.controls.text_filter, "cof")
    assert window.controls.clear_button.isVisibleTo(window)  # a filter is active, and says so
    with qtbot.waitSignal(window.results_shown, timeout=WAIT_MS):
        qtbot.keyClick(window.controls.text_filter, Qt.Key.Key_Escape)
    assert window.controls.text_filter.text() == "" and not window.controls.clear_button.isVisibleTo(window)


def test_back_restores_scroll_and_selection(qtbot, window, photo_dir):
    window.resize(700, 500)
    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    bar = window.view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0, timeout=WAIT_MS)
    window.view.setCurrentIndex(window.model.index(10))
    bar.setValue(bar.maximum())
    scrolled = bar.value()
    with qtbot.waitSignal(window.results_shown, timeout=WAIT_MS):
        window.act.similar.trigger()
    assert bar.value() == 0
    with qtbot.waitSignal(window.results_shown, timeout=WAIT_MS):
        window.act.back.trigger()
    assert bar.value() == scrolled and [h.record.name for h in window.view.selected_hits()] == [
        window.model.hits()[10].record.name]


def test_the_splitter_is_remembered(qtbot, make_window, tmp_path, indexed_data):
    data = tmp_path / "data"
    shutil.copytree(indexed_data, data)
    window = make_window(data)
    window.splitter.setSizes([410, 870])
    sizes = window.splitter.sizes()
    window.close()
    again = make_window(data)
    assert again.splitter.sizes()[0] == sizes[0]


def test_the_drop_hint_shows_at_start_and_survives_resizes(qtbot, window):
    assert "Drop an image here" in window.pane.preview.text()
    window.resize(900, 700)
    qtbot.wait(50)
    window.resize(1100, 760)
    qtbot.wait(50)
    assert "Drop an image here" in window.pane.preview.text()


def test_file_actions_say_when_they_fail_and_many_files_ask_first(qtbot, window, photo_dir, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from desktop import files

    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    monkeypatch.setattr(files.QDesktopServices, "openUrl", lambda url: False)  # no handler on this system
    window.view.setCurrentIndex(window.model.index(0))
    menu = window.view.context_menu(window.model.index(0))
    actions = {a.text(): a for a in menu.actions() if a.text()}
    actions["Open"].trigger()
    assert window.statusBar().currentMessage().startswith("No app could open")
    actions["Reveal in Folder"].trigger()
    assert window.statusBar().currentMessage().startswith("No file manager could show")
    actions["Copy Path"].trigger()
    assert window.statusBar().currentMessage() == "Copied 1 path."
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.No)
    window.view.selectAll()
    menu = window.view.context_menu(window.model.index(0))
    next(a for a in menu.actions() if a.text().startswith("Open ")).trigger()
    assert asked == [f"Open {window.model.rowCount()} files, each in its own window?"]


def test_the_query_is_marked_among_its_results(qtbot, window, photo_dir):
    from desktop.result_delegate import QUERY_ROLE

    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    marks = [window.model.data(window.model.index(r), QUERY_ROLE) for r in range(window.model.rowCount())]
    assert marks[0] is True and not any(marks[1:])


def test_dropping_a_folder_offers_to_index_it(qtbot, make_window, tmp_path, photo_dir):
    folder = mixed_folder(tmp_path / "dropped", photo_dir)
    window = make_window()
    drop(window.pane, file_mime(folder))
    box = window.folder_box
    assert box is not None and box.isVisible() and str(folder) in box.text()
    with qtbot.waitSignal(window.index_finished, timeout=WAIT_MS) as finished:
        next(b for b in box.buttons() if b.text() == "Index Folder").click()
    assert finished.args[0]["report"]["indexed"] == 6 and window.prefs.roots == [str(folder)]


def test_mouse_back_button_goes_back(qtbot, window, photo_dir):
    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    first = [h.record.name for h in window.model.hits()]
    window.view.setCurrentIndex(window.model.index(2))
    with qtbot.waitSignal(window.results_shown, timeout=WAIT_MS):
        window.act.similar.trigger()
    with qtbot.waitSignal(window.results_shown, timeout=WAIT_MS):
        qtbot.mouseRelease(window.view.viewport(), Qt.MouseButton.BackButton)
    assert [h.record.name for h in window.model.hits()] == first


def test_a_rescan_does_not_report_the_same_broken_files_again(qtbot, make_window, tmp_path, photo_dir):
    folder = mixed_folder(tmp_path / "broken", photo_dir)
    window = make_window()
    with qtbot.waitSignal(window.index_finished, timeout=WAIT_MS):
        window.start_index([str(folder)])
    first = window.jobs.report_dialog
    assert first is not None and len(first.skipped_rows()) == 2
    with qtbot.waitSignal(window.index_finished, timeout=WAIT_MS):
        window.start_index([str(folder)])
    assert window.jobs.report_dialog is first  # nothing new: no new dialog
    assert window.job_status.details_button.isVisible()
    window.job_status.details_button.click()  # the full list stays reachable
    assert len(window.jobs.report_dialog.skipped_rows()) == 2 and window.jobs.report_dialog is not first


def test_plain_words_in_the_window_details_in_about_and_a_shortcut_list(qtbot, window, photo_dir):
    from desktop.actions import shortcuts_text
    from desktop.errors import about_text

    assert window.status_model.text() == "Model ready" and "random" in window.status_model.toolTip()
    about = about_text(window.engine)
    assert "Model: VGG16 " in about and "Weights: random" in about and window.engine.store.location() in about
    table = shortcuts_text(window)
    for keys in ("Ctrl+O", "Ctrl+F", "Alt+Left", "F5", "Esc"):
        assert keys in table, keys
    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    window.act.clear_query.trigger()
    assert window.model.rowCount() == 0 and window.pane.caption.text() == "" and window.result_count.text() == ""
    assert not window.act.back.isEnabled()


def test_a_new_query_starts_a_new_trail(qtbot, window, photo_dir):
    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    window.view.setCurrentIndex(window.model.index(2))
    with qtbot.waitSignal(window.results_shown, timeout=WAIT_MS):
        window.act.similar.trigger()
    assert len(window.breadcrumb.labels()) == 2
    search_by_drop(qtbot, window, photo_dir / "rocket.jpg")
    assert window.breadcrumb.labels() == ["rocket.jpg"] and not window.act.back.isEnabled()


def test_an_index_job_posted_to_the_api_shows_in_the_window_and_desktop_jobs_in_the_api(
        qtbot, make_window, tmp_path, photo_dir, indexed_data):
    import json
    import urllib.request

    data = tmp_path / "data"
    shutil.copytree(indexed_data, data)
    folder = mixed_folder(tmp_path / "posted", photo_dir)
    window = make_window(data, serve_api=True)
    qtbot.waitUntil(lambda: window.session.api is not None, timeout=WAIT_MS)
    url = window.session.api.url
    request = urllib.request.Request(f"{url}/api/index", data=json.dumps({"paths": [str(folder)]}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with qtbot.waitSignal(window.index_finished, timeout=30_000) as finished, \
            urllib.request.urlopen(request, timeout=10) as response:
        posted = json.load(response)["job_id"]
    assert finished.args[0]["job_id"] == posted and finished.args[0]["report"]["indexed"] == 6
    with qtbot.waitSignal(window.index_finished, timeout=WAIT_MS) as rescan:
        window.start_index([str(folder)])
    with urllib.request.urlopen(f"{url}/api/jobs", timeout=10) as response:
        listed = [j["job_id"] for j in json.load(response)["jobs"]]
    assert listed[:2] == [rescan.args[0]["job_id"], posted]


# == a new user's first day (issue 11's trial) ======================================================
def test_every_setting_is_in_the_settings_dialog_with_the_widget_of_its_type(qtbot, tmp_path):
    worker = Worker("settings-test")
    base = Settings(data_dir=str(tmp_path / "data"), weights="random")
    dialog = SettingsDialog(Choices(base), (), worker)
    qtbot.addWidget(dialog)
    dialog.show()
    kinds = {"bool": QCheckBox, "int": QSpinBox, "float": QDoubleSpinBox}
    for f in setting_fields():
        editor = dialog.fields[f.name]
        assert dialog.tabs.isAncestorOf(editor), f.name
        expected = (QComboBox if f.metadata["choices"] else FolderList if f.name == "reference_folders"
                    else kinds.get(str(f.type), QLineEdit))
        assert isinstance(editor, expected), f.name
        assert editor.toolTip() == f.metadata["help"]
        if f.metadata["secret"]:
            assert editor.echoMode() == QLineEdit.EchoMode.Password
    assert dialog.choices() == Choices(base)  # shown as they are, read back the same
    dialog.follow_external_symlinks.setChecked(True)
    dialog.runtime.setCurrentIndex(dialog.runtime.findData("onnxruntime"))
    dialog.batch_size.setValue(8)
    dialog.es_timeout_s.setValue(2.5)
    dialog.reference_folders.add(str(tmp_path))
    dialog.api_token.setText("secret")
    dialog.keeper_rules.setText("")  # empty: the default again
    chosen = dialog.choices().settings
    assert chosen == base.replace(follow_external_symlinks=True, runtime="onnxruntime", batch_size=8,
                                  es_timeout_s=2.5, reference_folders=str(tmp_path), api_token="secret")
    dialog.keeper_rules.setText("newest")
    dialog.accept()
    assert dialog.isVisible() and "unknown keeper rule 'newest'" in dialog.error.text()
    dialog.reject()
    worker.stop()


def test_the_first_window_fits_the_screen_and_then_keeps_its_size(qtbot, tmp_path, prefs):
    assert first_size(QSize(2560, 1400)) == QSize(1280, 800)
    laptop = first_size(QSize(1366, 738))  # 1366x768 less a 30-px panel
    assert laptop.width() <= 1366 and laptop.height() <= 738 - 60  # room for a title bar

    def open_window() -> MainWindow:
        window = MainWindow(Settings(data_dir=str(tmp_path / "data"), weights="random"), prefs,
                            preload_model=False, serve_api=False, thumbnail_dir=tmp_path / "thumbs")
        qtbot.addWidget(window)
        window.show()
        qtbot.waitUntil(lambda: window.engine is not None, timeout=WAIT_MS)
        return window

    window = open_window()
    screen = window.screen().availableGeometry()
    assert window.width() <= screen.width() and window.height() <= screen.height()
    assert window.size() == first_size(screen.size())
    window.resize(620, 450)
    window.close()
    again = open_window()
    assert again.size() == QSize(620, 450)  # the user's own size, from then on
    again.close()


def test_every_crumb_shows_whole_or_elided_never_cut(qtbot):
    trail = Breadcrumb()
    qtbot.addWidget(trail)
    trail.resize(420, 40)
    trail.show()
    labels = ["a.jpg", "the long walk up the mountain on the second day of the holiday.jpg",
              "IMG_20230812_174455_HDR_portrait_mode_final_edit.jpg", "b.jpg"]
    trail.set_trail(labels, 3)
    qtbot.wait(50)
    assert trail.labels() == labels
    shown = [b.text() for b in trail.buttons]
    assert shown[0] == "a.jpg" and shown[3] == "b.jpg"
    assert "…" in shown[1] and shown[1].endswith("holiday.jpg") is False and shown[1].startswith("the long")
    assert shown[2].startswith("IMG_") and shown[2].endswith(".jpg") and "…" in shown[2]
    view = trail.viewport()
    for button in trail.buttons:  # inside the visible part, at least as wide as its own (elided) text needs
        left = button.mapTo(view, button.rect().topLeft()).x()
        assert left >= 0 and left + button.width() <= view.width(), button.text()
        assert button.width() >= button.sizeHint().width(), button.text()
    trail.resize(1600, 40)
    qtbot.waitUntil(lambda: [b.text() for b in trail.buttons] == labels)  # room again: the whole labels


def test_folders_indexed_by_the_cli_are_listed_rescanned_and_removable(qtbot, make_window, tmp_path, photo_dir,
                                                             shared_extractor):
    data = tmp_path / "data"
    cli_folder = mixed_folder(tmp_path / "from-the-cli", photo_dir)
    engine = Engine(Settings(data_dir=str(data), weights="random"), extractor=shared_extractor)
    engine.index([cli_folder])  # what `image-search index` and POST /api/index run
    assert engine.indexed_roots() == [str(cli_folder.resolve())]
    engine.close()
    window = make_window(data)
    window.act.folders.trigger()
    manager = window.folder_manager
    qtbot.waitUntil(lambda: manager.tree.topLevelItemCount() == 1 and manager.tree.topLevelItem(0).text(1) == "6",
                    timeout=WAIT_MS)
    item = manager.tree.topLevelItem(0)
    assert item.text(0) == str(cli_folder.resolve()) and item.text(2) == "—"  # scanned, but not from this app
    with qtbot.waitSignal(window.index_finished, timeout=WAIT_MS) as rescan:
        window.act.rescan.trigger()  # F5 re-scans it too
    assert rescan.args[0]["report"]["unchanged"] == 6
    qtbot.waitUntil(lambda: manager.tree.topLevelItemCount() == 1 and manager.tree.topLevelItem(0).text(1) == "6",
                    timeout=WAIT_MS)
    item = manager.tree.topLevelItem(0)
    item.setSelected(True)
    manager.remove_button.click()
    remove = next(b for b in manager.question.buttons() if b.text() == "Remove")
    with qtbot.waitSignal(window.index_finished, timeout=WAIT_MS):
        remove.click()
    qtbot.waitUntil(lambda: manager.tree.topLevelItemCount() == 0, timeout=WAIT_MS)
    assert window.engine.indexed_roots() == []
