"""Issue 14, expected and missing: details panel, quick look, sorting, the folder manager, committed progress."""
# ruff: noqa: F811 - the fixtures of tests/test_desktop.py are imported by name

from __future__ import annotations

import os
import shutil
import threading

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QItemSelectionModel, QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QFileDialog

from core.engine import Engine
from desktop.details import QuickLook
from desktop.folder_manager import FolderManager
from desktop.results_view import SORTS
from tests.test_desktop import (  # noqa: F401 - fixtures are found by name
    WAIT_MS,
    indexed_data,
    make_window,
    mixed_folder,
    prefs,
    search_by_drop,
    window,
)


def select_row(window, row: int) -> None:
    index = window.model.index(row)
    window.view.setCurrentIndex(index)
    window.view.selectionModel().select(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)


def test_details_panel_describes_the_selected_result(qtbot, window, photo_dir):
    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    assert not window.details.isVisible()
    window.act.details.trigger()  # View → Details Panel
    assert window.details.isVisible()
    assert window.details.empty.isVisible()  # nothing selected yet: says so
    select_row(window, 1)
    hit = window.model.hits()[1]
    fields = {k: f.text() for k, f in window.details.fields.items()}
    assert fields["name"] == hit.record.name and fields["folder"].replace("\u200b", "") == hit.record.folder
    assert fields["dimensions"] == f"{hit.record.width:,} × {hit.record.height:,} px"
    assert fields["score"] == f"{hit.score:.3f}" and fields["size"].endswith("B") and fields["modified"]
    # Larger than the grid's 160 px thumbnail: the panel's own preview, from the same disk cache.
    qtbot.waitUntil(lambda: window.details.preview.pixmap().width() > 160, timeout=WAIT_MS)
    window.act.details.trigger()
    assert not window.details.isVisible()


def test_quick_look_zooms_pans_and_closes_with_esc(qtbot, window, photo_dir):
    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    select_row(window, 0)
    window.activateWindow()  # under Xvfb with no window manager nothing else gives the window the keyboard
    window.view.setFocus()
    qtbot.waitUntil(window.view.hasFocus, timeout=WAIT_MS)
    qtbot.keyClick(window.view, Qt.Key.Key_Space)
    look = window.quick_look_dialog
    assert isinstance(look, QuickLook) and look.isVisible()
    with qtbot.waitSignal(look.shown, timeout=WAIT_MS):
        pass
    view = look.view
    record = window.model.hits()[0].record
    # Scene units are the image's own pixels, whatever size it was decoded at.
    assert view.item.boundingRect().width() == pytest.approx(record.width, abs=1)
    fitted = view.scale_now()
    qtbot.keyClick(view, Qt.Key.Key_Plus)
    assert view.scale_now() == pytest.approx(fitted * 1.25)
    centre = QPointF(view.viewport().rect().center())
    wheel = QWheelEvent(centre, view.mapToGlobal(centre), QPoint(), QPoint(0, 240), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view.viewport(), wheel)
    assert view.scale_now() == pytest.approx(fitted * 1.25 ** 3)
    bar = view.horizontalScrollBar()
    assert bar.maximum() > 0  # zoomed past the window: there is something to pan to
    before = bar.value()
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(200, 200))
    qtbot.mouseMove(view.viewport(), QPoint(120, 200))
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(120, 200))
    assert bar.value() > before  # dragged left: the view moved right
    qtbot.keyClick(view, Qt.Key.Key_Minus)
    assert view.scale_now() == pytest.approx(fitted * 1.25 ** 2)
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    assert not look.isVisible()


def test_space_in_the_name_filter_types_a_space(qtbot, window, photo_dir):
    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    select_row(window, 0)
    window.controls.text_filter.setFocus()
    qtbot.keyClicks(window.controls.text_filter, "a b")
    assert window.controls.text_filter.text() == "a b" and window.quick_look_dialog is None


def test_sorting_persists_and_groups_by_folder(qtbot, make_window, tmp_path, photo_dir, indexed_data, prefs):
    data = tmp_path / "data"
    shutil.copytree(indexed_data, data)
    window = make_window(data)
    folder = mixed_folder(tmp_path / "second", photo_dir)
    with qtbot.waitSignal(window.index_finished, timeout=WAIT_MS):
        window.start_index([str(folder)])
    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    best_first = window.model.hits()
    assert window.model.sort == "similarity"
    select_row(window, 3)
    chosen = best_first[3]
    sorts = {a.data(): a for a in window.act.sorts.actions()}
    assert set(sorts) == set(SORTS)

    sorts["name"].trigger()
    names = [h.record.name.casefold() for h in window.model.hits()]
    assert names == sorted(names)
    assert window.view.selected_hits() == [chosen]  # the selection follows its result
    sorts["date"].trigger()
    dates = [h.record.mtime_ns for h in window.model.hits()]
    assert dates == sorted(dates, reverse=True)
    sorts["folder"].trigger()
    folders = [h.record.folder for h in window.model.hits()]
    groups = list(dict.fromkeys(folders))
    assert len(groups) == 2 and folders == sorted(folders, key=groups.index)  # each folder's results together
    assert groups[0] == best_first[0].record.folder  # the folder of the best result first
    for group in groups:
        scores = [h.score for h in window.model.hits() if h.record.folder == group]
        assert scores == sorted(scores, reverse=True)
    assert sorts["folder"].isChecked() and not sorts["name"].isChecked()
    assert prefs.sort == "folder"
    window.close()

    again = make_window(data)
    assert again.model.sort == "folder"
    search_by_drop(qtbot, again, photo_dir / "coffee.jpg")
    assert [h.record.folder for h in again.model.hits()] == folders


def test_folder_manager_lists_counts_rescans_and_removes(qtbot, make_window, tmp_path, photo_dir, monkeypatch):
    window = make_window()
    first = mixed_folder(tmp_path / "first", photo_dir)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(first))
    window.act.folders.trigger()
    manager = window.folder_manager
    assert isinstance(manager, FolderManager) and manager.tree.topLevelItemCount() == 0
    assert "No folders indexed yet" in manager.note.text()
    with qtbot.waitSignal(window.index_finished, timeout=WAIT_MS):
        manager.add_button.click()
    qtbot.waitUntil(lambda: manager.tree.topLevelItemCount() == 1 and manager.tree.topLevelItem(0).text(1) != "…",
                    timeout=WAIT_MS)
    item = manager.tree.topLevelItem(0)
    indexed = window.engine.store.count()
    assert item.text(0) == str(first) and item.text(1) == f"{indexed:,}" and item.text(2) != "—"

    # Emptied folder: the re-scan keeps its images (it may be a drive not connected) and asks before forgetting.
    for name in os.listdir(first):
        os.remove(first / name)
    item.setSelected(True)
    with qtbot.waitSignal(window.index_finished, timeout=WAIT_MS):
        manager.rescan_button.click()
    qtbot.waitUntil(lambda: manager.question is not None and manager.question.isVisible(), timeout=WAIT_MS)
    assert window.engine.store.count() == indexed
    assert f"{indexed} images under {first}" in manager.question.text()
    forget = next(b for b in manager.question.buttons() if b.text() == "Forget Them")
    with qtbot.waitSignal(window.index_finished, timeout=WAIT_MS):
        forget.click()
    assert window.engine.store.count() == 0

    second = mixed_folder(tmp_path / "second", photo_dir)
    window.prefs.add_root(str(second))
    with qtbot.waitSignal(window.index_finished, timeout=WAIT_MS):
        window.start_index([str(second)])
    qtbot.waitUntil(lambda: manager.tree.topLevelItemCount() == 2, timeout=WAIT_MS)
    manager.tree.topLevelItem(1).setSelected(True)
    manager.tree.topLevelItem(0).setSelected(False)
    assert manager.selected() == str(second)
    manager.remove_button.click()
    remove = next(b for b in manager.question.buttons() if b.text() == "Remove")
    with qtbot.waitSignal(window.index_finished, timeout=WAIT_MS):
        remove.click()
    assert window.engine.store.count() == 0 and window.prefs.roots == [str(first)]
    qtbot.waitUntil(lambda: manager.tree.topLevelItemCount() == 1, timeout=WAIT_MS)


def test_progress_never_runs_ahead_of_the_index(settings, shared_extractor, photo_dir, tmp_path):
    """Issue 14: 58/58 while the index held 48. `done` counts files whose outcome is final: committed to the
    index, or skipped with a reason."""
    folder = mixed_folder(tmp_path / "mixed", photo_dir)
    engine = Engine(settings.replace(batch_size=4), extractor=shared_extractor)
    seen = []
    lock = threading.Lock()

    def progress(p):
        with lock:
            seen.append((p.done, engine.store.count(), p.total))

    report = engine.index([folder], progress=progress)
    engine.close()
    skipped = len(report.skipped)
    assert seen and all(done <= count + skipped for done, count, _ in seen)
    assert seen[-1][0] == seen[-1][2] == report.indexed + skipped


@pytest.fixture
def tagging(qtbot, tmp_path, indexed_data, shared_extractor):
    """(engine on a copy of the indexed photos, a real Worker's call) for the tag widgets."""
    from core.config import Settings
    from desktop.worker import Worker

    shutil.copytree(indexed_data, tmp_path / "data")
    engine = Engine(Settings(data_dir=str(tmp_path / "data"), weights="random"), extractor=shared_extractor)
    worker = Worker("tags test")
    yield engine, worker.call
    worker.stop()
    engine.close()


def test_details_panel_tag_editor_round_trips_to_the_store(qtbot, tagging):
    from core.store import Hit
    from desktop.details import DetailsPanel

    engine, call = tagging
    first, second = sorted(engine.store.records(), key=lambda r: r.path)[:2]
    engine.set_tags(second.id, ["Breakfast"])
    engine.annotations().set_labels({first.id: ["espresso", "cup"]})
    panel = DetailsPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_engine(engine, call)
    editor = panel.tag_editor
    panel.show_hit(Hit(first, 0.9), None)
    qtbot.waitUntil(editor.isEnabled, timeout=WAIT_MS)
    assert editor.tags() == [] and panel.fields["labels"].text() == "espresso; cup"  # labels apart from tags
    assert editor.known.stringList() == ["Breakfast"]  # completion over the tags in use

    editor.input.setText("Morning, Kaffee ")
    with qtbot.waitSignal(panel.tags_saved, timeout=WAIT_MS):
        qtbot.keyClick(editor.input, Qt.Key.Key_Return)
    assert engine.tags(first.id) == ["Morning", "Kaffee"] and editor.tags() == ["Morning", "Kaffee"]
    assert editor.input.text() == "" and editor.isEnabled()

    editor.list.item(0).setSelected(True)  # Morning
    assert editor.remove_button.isEnabled()
    with qtbot.waitSignal(panel.tags_saved, timeout=WAIT_MS):
        editor.remove_button.click()
    assert engine.tags(first.id) == ["Kaffee"] and editor.tags() == ["Kaffee"]

    editor.input.setText("bad\ttag")  # refused by the store: said, nothing lost
    qtbot.keyClick(editor.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: editor.message.isVisible() and editor.isEnabled(), timeout=WAIT_MS)
    assert "control character" in editor.message.text() and engine.tags(first.id) == ["Kaffee"]

    panel.show_hit(Hit(second, 0.5), None)  # another image: its own tags
    qtbot.waitUntil(lambda: editor.isEnabled() and editor.tags() == ["Breakfast"], timeout=WAIT_MS)
    assert panel.fields["labels"].text() == "—" and not editor.message.isVisible()
    assert [r.id for r in engine.search_words("kaffee")] == [first.id]


def test_tags_dialog_adds_and_removes_on_many_images(qtbot, tagging):
    from desktop.tags import TagsDialog

    engine, call = tagging
    a, b, c = sorted(engine.store.records(), key=lambda r: r.path)[:3]
    engine.set_tags(a.id, ["Beach", "Sea"])
    engine.set_tags(b.id, ["Beach"])
    dialog = TagsDialog(engine, [a.id, b.id, c.id], call)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.list.count() == 2, timeout=WAIT_MS)
    states = dialog.states()
    assert states == {"Beach": Qt.CheckState.PartiallyChecked, "Sea": Qt.CheckState.PartiallyChecked}
    assert dialog.list.item(1).text() == "Sea  (1 of 3)"
    dialog.input.setText("holiday, beach")  # a new tag, and an existing one (matched by its folded form)
    qtbot.keyClick(dialog.input, Qt.Key.Key_Return)
    assert dialog.states() == {"Beach": Qt.CheckState.Checked, "Sea": Qt.CheckState.PartiallyChecked,
                               "holiday": Qt.CheckState.Checked}
    with qtbot.waitSignal(dialog.applied, timeout=WAIT_MS):
        dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()
    assert engine.tags(a.id) == ["Beach", "Sea", "holiday"]
    assert engine.tags(b.id) == ["Beach", "holiday"] and engine.tags(c.id) == ["Beach", "holiday"]

    again = TagsDialog(engine, [a.id, c.id], call)
    qtbot.addWidget(again)
    qtbot.waitUntil(lambda: again.list.count() == 3, timeout=WAIT_MS)
    beach = next(again.list.item(n) for n in range(3) if again.list.item(n).text() == "Beach")
    beach.setCheckState(Qt.CheckState.Unchecked)
    with qtbot.waitSignal(again.applied, timeout=WAIT_MS):
        again.accept()
    assert engine.tags(a.id) == ["Sea", "holiday"] and engine.tags(c.id) == ["holiday"]
    assert engine.tags(b.id) == ["Beach", "holiday"]  # not selected: untouched


def test_window_tags_the_selected_results_and_the_details_panel_follows(qtbot, window, photo_dir):
    from desktop.tags import TagsDialog

    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    window.act.details.trigger()
    select_row(window, 1)
    hit = window.model.hits()[1]
    editor = window.details.tag_editor
    qtbot.waitUntil(editor.isEnabled, timeout=WAIT_MS)  # the panel got the engine when the index opened
    assert window.act.tags.isEnabled() and window.act.tags.shortcut().toString() == "Ctrl+T"
    assert "Tags…" in [a.text() for a in window.view.context_menu(window.model.index(1)).actions()]

    window.act.tags.trigger()  # Edit → Tags… on the selection
    dialog = window.findChild(TagsDialog)
    assert dialog is not None and dialog.ids == [hit.record.id]
    qtbot.waitUntil(lambda: dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled(), timeout=WAIT_MS)
    dialog.input.setText("Espresso")
    qtbot.keyClick(dialog.input, Qt.Key.Key_Return)
    with qtbot.waitSignal(dialog.applied, timeout=WAIT_MS):
        dialog.accept()
    assert window.engine.tags(hit.record.id) == ["Espresso"]
    qtbot.waitUntil(lambda: editor.tags() == ["Espresso"], timeout=WAIT_MS)  # the panel reloads its tags
