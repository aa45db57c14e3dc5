"""The desktop duplicates window (issue 15): real engine (random weights) on real files copied from the test
photos (an exact copy, a re-encoded copy, a reference folder), real Qt widgets offscreen, trash into an
isolated freedesktop.org trash."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from core.duplicates import RULE_REASONS
from desktop.duplicates_dialog import DuplicatesDialog
from desktop.duplicates_review import CHOSEN_REASON
from desktop.thumbnails import ThumbnailLoader

THRESHOLD = 0.995  # random weights: two different photos reach 0.993 (core/duplicates.py)
WAIT_MS = 60_000


@pytest.fixture
def library(photo_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """Group A: an original (the oldest), its exact copy and a quality-60 copy. Group B: a reference folder
    holding an original and its quality-60 copy, and an exact copy outside it. One photo with no copy."""
    lib, ref = tmp_path / "lib", tmp_path / "ref"
    files = {"original": lib / "astronaut.jpg", "copy": lib / "copies" / "astronaut.jpg", "q60": lib / "q60.jpg",
             "ref": ref / "coffee.jpg", "ref_q60": ref / "coffee-q60.jpg", "ref_copy": lib / "coffee copy.jpg",
             "alone": lib / "moon.jpg"}
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    for name, source in (("original", "astronaut"), ("copy", "astronaut"), ("ref", "coffee"),
                         ("ref_copy", "coffee"), ("alone", "moon")):
        shutil.copy(photo_dir / f"{source}.jpg", files[name])
    Image.open(photo_dir / "astronaut.jpg").save(files["q60"], quality=60)
    Image.open(photo_dir / "coffee.jpg").save(files["ref_q60"], quality=60)
    os.utime(files["original"], ns=(10**18, 10**18))  # the oldest of the equal exact copies
    return files


@pytest.fixture
def dialog(qtbot, engine, library, tmp_path):
    engine.index([str(tmp_path / "lib"), str(tmp_path / "ref")])
    loader = ThumbnailLoader(64, tmp_path / "thumbs")
    window = DuplicatesDialog(engine, loader)
    qtbot.addWidget(window)
    window.reference_folders = [str(tmp_path / "ref")]
    window.threshold.setValue(THRESHOLD)
    window._rerun_timer.stop()  # the test runs the search itself
    window.show()
    yield window
    window.close()
    loader.shutdown()


def find(qtbot, dialog: DuplicatesDialog) -> None:
    dialog.find()
    qtbot.waitUntil(lambda: dialog.find_button.isEnabled(), timeout=WAIT_MS)
    assert "group" in dialog.status.text(), dialog.status.text()


def member(dialog: DuplicatesDialog, group: int, row: int, column: int = 0):
    model = dialog.tree.model_
    return model.index(row, column, model.index(group, 0))


def header_text(dialog: DuplicatesDialog, group: int) -> str:
    return dialog.tree.model_.index(group, 0).data()


def row_texts(dialog: DuplicatesDialog, group: int) -> list[list[str]]:
    rows = dialog.tree.model_.rowCount(dialog.tree.model_.index(group, 0))
    return [[member(dialog, group, r, c).data() for c in range(3)] for r in range(rows)]


def checked(dialog: DuplicatesDialog, group: int) -> list[bool | None]:
    """Each row's check box: True/False, None where there is none."""
    rows = dialog.tree.model_.rowCount(dialog.tree.model_.index(group, 0))
    boxes = [member(dialog, group, r) for r in range(rows)]
    return [None if not i.flags() & Qt.ItemFlag.ItemIsUserCheckable
            else Qt.CheckState(i.data(Qt.ItemDataRole.CheckStateRole)) == Qt.CheckState.Checked for i in boxes]


def test_groups_show_keeper_reason_kinds_and_default_marks(qtbot, dialog, library):
    find(qtbot, dialog)
    p = {k: str(v) for k, v in library.items()}
    assert dialog.groups() == [[p["original"], p["copy"], p["q60"]], [p["ref"], p["ref_copy"], p["ref_q60"]]]
    qtbot.waitUntil(lambda: member(dialog, 0, 0).data(Qt.ItemDataRole.DecorationRole) is not None,
                    timeout=WAIT_MS)  # the thumbnail came
    texts = row_texts(dialog, 0)
    assert texts[0][1].startswith("★ keep (") and texts[0][1][len("★ keep ("):-1] in RULE_REASONS.values()
    assert [t[1] for t in texts[1:]] == ["exact", "near-duplicate"]
    assert float(texts[2][2]) >= THRESHOLD
    assert checked(dialog, 0) == [None, True, True]  # the keeper cannot be marked; exact and near are
    assert dialog.review.reason(1) == RULE_REASONS["reference"]
    # The reference folder's own copy is never markable, the copy outside it is marked.
    assert checked(dialog, 1) == [None, True, None]
    assert "reference" in row_texts(dialog, 1)[2][1]
    assert dialog.review.set_mark(1, dialog.tree.image_ids(1)[2], True) is False
    assert "2 groups, 6 images, 3 marked images" in dialog.status.text()


def test_keyboard_navigation_marks_and_keep_this(qtbot, dialog, library):
    find(qtbot, dialog)
    tree = dialog.tree
    assert tree.current() == (0, tree.image_ids(0)[0])
    qtbot.keyClick(tree, Qt.Key.Key_N)
    assert tree.current() == (1, tree.image_ids(1)[0])
    qtbot.keyClick(tree, Qt.Key.Key_N)  # the last group stays current
    assert tree.current()[0] == 1
    qtbot.keyClick(tree, Qt.Key.Key_P)
    assert tree.current()[0] == 0
    qtbot.keyClick(tree, Qt.Key.Key_Down)  # the exact copy
    copy_id = tree.current()[1]
    qtbot.keyClick(tree, Qt.Key.Key_Space)
    assert checked(dialog, 0) == [None, False, True] and copy_id not in dialog.review.marks()
    qtbot.keyClick(tree, Qt.Key.Key_Space)
    assert checked(dialog, 0) == [None, True, True]
    qtbot.keyClick(tree, Qt.Key.Key_K)  # keep the copy instead of the original
    assert dialog.groups()[0][0] == str(library["copy"])
    assert dialog.review.reason(0) == CHOSEN_REASON and CHOSEN_REASON in row_texts(dialog, 0)[0][1]
    assert tree.current() == (0, copy_id)
    # The original is now an exact copy of the keeper, so it is marked; the new keeper is not.
    assert [t[1] for t in row_texts(dialog, 0)[1:]] == ["exact", "near-duplicate"]
    assert checked(dialog, 0) == [None, True, True]
    assert copy_id not in dialog.review.marks()
    # A click on a box marks as Space does, and the group's line counts it.
    box = member(dialog, 0, 2)
    assert dialog.tree.model_.setData(box, Qt.CheckState.Unchecked.value, Qt.ItemDataRole.CheckStateRole)
    assert box.data(Qt.ItemDataRole.UserRole) not in dialog.review.marks()
    assert header_text(dialog, 0).endswith("· 1 marked")
    assert not dialog.tree.model_.setData(member(dialog, 0, 0), Qt.CheckState.Checked.value,
                                          Qt.ItemDataRole.CheckStateRole)  # the keeper


def test_review_without_qt():
    from core.duplicates import Group, Member
    from core.store.base import ImageRecord
    from desktop.duplicates_review import Review

    def member(name: str, kind: str, reference: bool = False) -> Member:
        return Member(ImageRecord(name, (f"/p/{name}.jpg",), 100, 0, 0, 0, name * 4, 10, 10), kind, 0.99, reference)

    review = Review([Group((member("a", "keeper"), member("b", "exact"), member("c", "similar"),
                            member("d", "near-duplicate", reference=True)), "larger file")])
    assert review.marks() == ["b"]  # not the similar shot, not the reference-folder file
    assert review.set_mark(0, "d", True) is False and review.set_mark(0, "a", True) is False
    review.keep(0, "c")
    assert [r.id for r in review.rows(0)] == ["c", "a", "b", "d"] and review.reason(0) == CHOSEN_REASON
    assert [r.kind for r in review.rows(0)] == ["keeper", "similar", "exact", "near-duplicate"]
    assert review.marks() == ["b"]  # the old keeper is only similar to the new one: not marked
    assert review.marked_bytes() == 100 and len(review.marked_groups()) == 1
    review.drop(0)
    assert review.marks() == [] and review.groups == []


def test_review_carries_the_users_choices_into_a_new_search():
    """Found again (after an action, a new threshold): keep-this and the user's marks stay where their images
    still are; an image gone takes its choice with it; new images get the default marks."""
    from core.duplicates import Group, Member
    from core.store.base import ImageRecord
    from desktop.duplicates_review import Review

    def member(name: str, kind: str, copy_of: str | None = None) -> Member:
        return Member(ImageRecord(name, (f"/p/{name}.jpg",), 100, 0, 0, 0, name * 4, 10, 10), kind, 0.99, False,
                      copy_of=copy_of)

    first = Review([Group((member("a", "keeper"), member("b", "exact"), member("c", "near-duplicate")), "oldest"),
                    Group((member("x", "keeper"), member("y", "similar"), member("y2", "exact", "y")), "oldest")])
    assert first.marks() == ["b", "c", "y2"]  # y2 is an exact copy of y: marked, y (similar) is not
    first.keep(0, "b")
    first.set_mark(0, "c", False)
    first.set_mark(1, "y", True)
    again = Review([Group((member("a", "keeper"), member("b", "exact"), member("c", "near-duplicate"),
                           member("d", "exact")), "oldest"),
                    Group((member("x", "keeper"), member("y2", "similar")), "oldest")], first)
    assert [r.id for r in again.rows(0)] == ["b", "a", "c", "d"] and again.reason(0) == CHOSEN_REASON
    assert again.marks() == ["a", "d"]  # a: replaced by the chosen keeper; c: unmarked by the user; d: new
    assert again.reason(1) == "oldest" and again.marks() == ["a", "d"]  # y is gone: its mark with it

    # Keep y2, an exact copy of y (a similar shot of x): x is only similar to it (not marked), y is its exact
    # copy (marked).
    shots = Review([Group((member("x", "keeper"), member("y", "similar"), member("y2", "exact", "y")), "oldest")])
    shots.keep(0, "y2")
    assert [(r.id, r.kind) for r in shots.rows(0)] == [("y2", "keeper"), ("x", "similar"), ("y", "exact")]
    assert shots.marks() == ["y"]


def test_an_exact_copy_of_another_member_names_it(qtbot, tmp_path):
    from core.duplicates import Group, Member
    from core.store.base import ImageRecord
    from desktop.duplicates_model import DuplicatesModel
    from desktop.duplicates_review import Review

    def member(name: str, kind: str, copy_of: str | None = None) -> Member:
        return Member(ImageRecord(name, (f"/p/{name}.jpg",), 100, 0, 0, 0, name * 4, 10, 10), kind, 0.97, False,
                      copy_of=copy_of)

    loader = ThumbnailLoader(64, tmp_path / "thumbs")
    model = DuplicatesModel(loader)
    model.set_review(Review([Group((member("k", "keeper"), member("a", "similar"), member("a2", "exact", "a"),
                                    member("k2", "exact")), "oldest")]))
    kinds = [model.index(r, 1, model.index(0, 0)).data() for r in range(4)]
    assert kinds[1:] == ["similar", "exact (copy of a.jpg)", "exact"]
    loader.shutdown()


def test_compare_links_zoom_and_pan(qtbot, dialog, library):
    find(qtbot, dialog)
    dialog.tree.go_to(0, dialog.tree.image_ids(0)[2])
    qtbot.keyClick(dialog.tree, Qt.Key.Key_C)
    view = dialog.compare_view
    assert {r.path for r in view.records} == {str(library["original"]), str(library["q60"])}
    qtbot.waitUntil(view.loaded, timeout=WAIT_MS)
    left_item, right_item = (v.scene().items()[0] for v in view.views)
    assert left_item.sceneBoundingRect() == right_item.sceneBoundingRect()  # shown at one width: details line up
    view.set_zoom(3.0)
    left, right = view.views
    assert left.transform() == right.transform() and view.zoom() == pytest.approx(3.0)
    view.zoom_by(1.25)
    assert right.transform().m11() == pytest.approx(3.75)
    left.horizontalScrollBar().setValue(left.horizontalScrollBar().maximum() // 2)
    left.verticalScrollBar().setValue(17)
    assert right.horizontalScrollBar().value() == left.horizontalScrollBar().value() > 0
    assert right.verticalScrollBar().value() == 17
    assert "\n" + str(library["q60"]) in "\n".join(label.text() for label in view.findChildren(type(dialog.status)))


def test_progress_then_cancel(qtbot, dialog, engine, monkeypatch):
    seen: list[tuple[int, int]] = []
    dialog.calls.progress.connect(lambda done, total: seen.append((done, total)))
    find(qtbot, dialog)
    assert seen and seen[-1][0] == seen[-1][1] == 7
    gate = threading.Event()
    groups = engine.duplicate_groups
    monkeypatch.setattr(engine, "duplicate_groups", lambda *a, **k: (gate.wait(WAIT_MS / 1000), groups(*a, **k))[1])
    dialog.find()
    assert dialog.cancel_button.isEnabled() and not dialog.find_button.isEnabled()
    dialog.cancel_button.click()
    gate.set()
    qtbot.waitUntil(lambda: dialog.find_button.isEnabled(), timeout=WAIT_MS)
    assert dialog.status.text() == "Cancelled."


@pytest.fixture
def isolated_trash(monkeypatch, tmp_path) -> Path:
    """send2trash reads XDG_DATA_HOME when imported: point its module globals and the environment (which
    core.file_actions reads for undo) at a trash under tmp_path, never the user's."""
    from send2trash import plat_other

    home, data = tmp_path / "home", tmp_path / "home" / "xdg"
    data.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.setattr(plat_other, "XDG_DATA_HOME", os.fsencode(data))
    monkeypatch.setattr(plat_other, "HOMETRASH_B", os.fsencode(data / "Trash"))
    monkeypatch.setattr(plat_other, "HOMETRASH", str(data / "Trash"))
    return data / "Trash"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="undo from the trash is Linux only")
def test_delete_marked_to_trash_then_undo(qtbot, dialog, library, engine, isolated_trash, monkeypatch):
    find(qtbot, dialog)
    asked: list[str] = []
    monkeypatch.setattr(dialog, "confirm", lambda text: asked.append(text) or True)
    marked = {k: library[k] for k in ("copy", "q60", "ref_copy")}
    freed = sum(p.stat().st_size for p in marked.values())
    ids = {k: engine.store.get_by_path(str(p)).id for k, p in marked.items()}
    with qtbot.waitSignal(dialog.action_finished, timeout=WAIT_MS) as done:
        qtbot.keyClick(dialog.tree, Qt.Key.Key_Delete)
    assert asked and asked[0].startswith(f"Move 3 files ({freed / 1e6:.1f} MB) to the trash")
    result = done.args[0]
    assert sorted(result.done) == sorted(str(p) for p in marked.values()) and result.bytes == freed
    assert not any(p.exists() for p in marked.values())
    assert sorted(p.name for p in (isolated_trash / "files").iterdir()) == ["astronaut.jpg", "coffee copy.jpg",
                                                                             "q60.jpg"]
    assert all(engine.store.get(i) is None for i in ids.values())  # the index has no dangling entries
    qtbot.waitUntil(lambda: dialog.find_button.isEnabled(), timeout=WAIT_MS)  # groups found again
    assert dialog.groups() == [[str(library["ref"]), str(library["ref_q60"])]]  # both in the reference folder
    assert "3 files done" in dialog.outcome.text()

    with qtbot.waitSignal(dialog.action_finished, timeout=WAIT_MS) as undone:
        dialog.undo_button.click()
    assert sorted(undone.args[0].done) == sorted(str(p) for p in marked.values())
    assert not undone.args[0].cancelled
    assert all(p.exists() for p in marked.values()) and list((isolated_trash / "files").iterdir()) == []
    assert all(engine.store.get(i) is not None for i in ids.values())
    qtbot.waitUntil(lambda: len(dialog.groups()) == 2, timeout=WAIT_MS)


def test_nothing_marked_asks_nothing_and_moves_nothing(qtbot, dialog, library, monkeypatch):
    find(qtbot, dialog)
    monkeypatch.setattr(dialog, "confirm", lambda text: pytest.fail("nothing may be asked"))
    for group in range(2):
        for image_id in dialog.tree.image_ids(group):
            dialog.review.set_mark(group, image_id, False)
    qtbot.keyClick(dialog.tree, Qt.Key.Key_Delete)
    assert dialog.status.text() == "Nothing is marked." and all(p.exists() for p in library.values())


def test_not_duplicates_hides_the_group_on_later_runs_until_reset(qtbot, dialog, library):
    find(qtbot, dialog)
    dialog.tree.go_to(0)
    dialog.not_dups_button.click()
    qtbot.waitUntil(lambda: len(dialog.groups()) == 1, timeout=WAIT_MS)
    assert dialog.groups()[0][0] == str(library["ref"])
    assert header_text(dialog, 0).startswith("Group 1 ·")
    find(qtbot, dialog)
    assert [g[0] for g in dialog.groups()] == [str(library["ref"])]
    with qtbot.waitSignal(dialog.groups_shown, timeout=WAIT_MS):
        dialog.reset_decisions()
    assert len(dialog.groups()) == 2


def test_changing_the_threshold_runs_again(qtbot, dialog, library):
    find(qtbot, dialog)
    dialog.threshold.setValue(1.0)  # exact copies still pair (equal bytes); the quality-60 copies drop out
    p = {k: str(v) for k, v in library.items()}
    qtbot.waitUntil(lambda: dialog.groups() == [[p["original"], p["copy"]], [p["ref"], p["ref_copy"]]],
                    timeout=WAIT_MS)


def test_move_marked_to_folder_keeps_relative_paths_and_undo_brings_them_back(qtbot, dialog, library, tmp_path,
                                                                               monkeypatch):
    find(qtbot, dialog)
    dest = tmp_path / "moved"
    monkeypatch.setattr("desktop.duplicates_dialog.QFileDialog.getExistingDirectory", lambda *a, **k: str(dest))
    asked: list[str] = []
    monkeypatch.setattr(dialog, "confirm", lambda text: asked.append(text) or True)
    copy_id = dialog.tree.image_ids(0)[1]
    dialog.tree.go_to(0, copy_id)
    qtbot.keyClick(dialog.tree, Qt.Key.Key_K)  # keep the copy: the engine's keeper is moved instead
    with qtbot.waitSignal(dialog.action_finished, timeout=WAIT_MS):
        dialog.move_button.click()
    assert asked[0].startswith("Move 3 files") and str(dest) in asked[0]
    lib = tmp_path / "lib"
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*.jpg")) == sorted(
        str(library[k].relative_to(lib)) for k in ("original", "q60", "ref_copy"))
    assert library["copy"].exists()
    qtbot.waitUntil(lambda: dialog.find_button.isEnabled(), timeout=WAIT_MS)
    with qtbot.waitSignal(dialog.action_finished, timeout=WAIT_MS):
        dialog.undo_button.click()
    assert all(p.exists() for p in library.values()) and not list(dest.rglob("*.jpg"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the isolated trash is the freedesktop.org one")
def test_main_window_results_drop_trashed_files(qtbot, tmp_path, library, shared_extractor, isolated_trash,
                                                monkeypatch):
    from PySide6.QtCore import QSettings

    from core.config import Settings
    from core.engine import Engine
    from desktop.main_window import MainWindow
    from desktop.preferences import Preferences

    settings = Settings(data_dir=str(tmp_path / "data"), weights="random", api_port=0,
                        reference_folders=str(tmp_path / "ref"))
    engine = Engine(settings, extractor=shared_extractor)
    engine.index([str(tmp_path / "lib"), str(tmp_path / "ref")])
    original = engine.store.get_by_path(str(library["original"]))
    engine.close()
    prefs = Preferences(QSettings(str(tmp_path / "prefs.ini"), QSettings.Format.IniFormat))
    window = MainWindow(settings, prefs, extractor=shared_extractor, thumbnail_dir=tmp_path / "thumbs",
                        serve_api=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.engine is not None and window.model_ready, timeout=WAIT_MS)
    with qtbot.waitSignal(window.results_shown, timeout=WAIT_MS):
        window.refine(original)
    shown = lambda: {h.record.path for h in window.model.hits()}  # noqa: E731
    assert str(library["copy"]) in shown()
    window.act.duplicates.trigger()
    dialog = window.duplicates_dialog
    qtbot.waitUntil(lambda: dialog.find_button.isEnabled(), timeout=WAIT_MS)  # the first run, at 0.95
    dialog.threshold.setValue(THRESHOLD)
    dialog._rerun_timer.stop()
    find(qtbot, dialog)
    assert dialog.review.reason(1) == RULE_REASONS["reference"]  # the reference folder came from the settings
    monkeypatch.setattr(dialog, "confirm", lambda text: True)
    with qtbot.waitSignal(dialog.action_finished, timeout=WAIT_MS) as done:
        dialog.trash_button.click()
    assert sorted(done.args[0].done) == sorted(str(library[k]) for k in ("copy", "q60", "ref_copy"))
    qtbot.waitUntil(lambda: str(library["copy"]) not in shown(), timeout=WAIT_MS)  # the search ran again
    assert str(library["q60"]) not in shown()
    assert str(library["original"]) in shown()
    window.close()


def test_a_long_list_expands_groups_as_the_user_gets_near(qtbot, tmp_path):
    from core.duplicates import Group, Member
    from core.store.base import ImageRecord
    from desktop.duplicates_review import Review
    from desktop.duplicates_tree import PREPARE_AHEAD, DuplicatesTree

    def member(name: str, kind: str) -> Member:
        return Member(ImageRecord(name, (str(tmp_path / f"{name}.jpg"),), 100, 0, 0, 0, name * 4, 10, 10), kind,
                      0.99, False)

    loader = ThumbnailLoader(64, tmp_path / "thumbs")
    tree = DuplicatesTree(loader)
    qtbot.addWidget(tree)
    tree.show_review(Review([Group((member(f"a{i}", "keeper"), member(f"b{i}", "exact")), "oldest")
                             for i in range(3 * PREPARE_AHEAD)]))
    model = tree.model_
    far = 2 * PREPARE_AHEAD
    assert tree.isExpanded(model.index(0, 0)) and not tree.isExpanded(model.index(far, 0))
    tree.go_to(far, f"b{far}")
    assert tree.isExpanded(model.index(far, 0)) and tree.current() == (far, f"b{far}")
    loader.shutdown()


def test_a_new_threshold_during_an_action_waits_for_it(qtbot, dialog, engine, monkeypatch):
    find(qtbot, dialog)
    gate = threading.Event()
    undo = engine.undo_last_action
    monkeypatch.setattr(engine, "undo_last_action", lambda: (gate.wait(WAIT_MS / 1000), undo())[1])
    dialog.undo_button.click()
    dialog.find()  # as the threshold box does: it must not cancel the undo
    assert not dialog.calls.cancel.is_set()
    gate.set()
    with qtbot.waitSignal(dialog.groups_shown, timeout=WAIT_MS):  # then the search runs
        pass


def test_status_counts_follow_marks_keep_and_not_duplicates(qtbot, dialog, library):
    find(qtbot, dialog)
    assert "2 groups, 6 images, 3 marked images" in dialog.status.text()
    dialog.tree.go_to(0, dialog.tree.image_ids(0)[1])
    qtbot.keyClick(dialog.tree, Qt.Key.Key_Space)  # unmark the exact copy
    assert "2 groups, 6 images, 2 marked images" in dialog.status.text()
    box = member(dialog, 0, 1)  # a click on its box marks it again
    assert dialog.tree.model_.setData(box, Qt.CheckState.Checked.value, Qt.ItemDataRole.CheckStateRole)
    assert "3 marked images" in dialog.status.text()

    dialog.tree.go_to(0)
    dialog.not_dups_button.click()
    qtbot.waitUntil(lambda: len(dialog.groups()) == 1 and dialog.find_button.isEnabled(), timeout=WAIT_MS)
    # It says what it hid and how to get it back, and the counts follow.
    assert "Group 1 (3 images, keeper astronaut.jpg) marked “not duplicates” and hidden" in dialog.outcome.text()
    assert "Reset Decisions" in dialog.outcome.text()
    assert dialog.status.text().startswith("1 group, 3 images, 1 marked image (")
    with qtbot.waitSignal(dialog.groups_shown, timeout=WAIT_MS):
        dialog.reset_button.click()
    qtbot.waitUntil(lambda: dialog.find_button.isEnabled(), timeout=WAIT_MS)
    assert len(dialog.groups()) == 2 and "forgotten" in dialog.outcome.text()
    assert "2 groups, 6 images, 3 marked images" in dialog.status.text()


def test_keep_this_and_marks_survive_an_action_on_another_group(qtbot, dialog, library, tmp_path, monkeypatch):
    find(qtbot, dialog)
    monkeypatch.setattr("desktop.duplicates_dialog.QFileDialog.getExistingDirectory",
                        lambda *a, **k: str(tmp_path / "moved"))
    monkeypatch.setattr(dialog, "confirm", lambda text: True)
    tree = dialog.tree
    original_id, copy_id, q60_id = tree.image_ids(0)
    tree.go_to(0, copy_id)
    qtbot.keyClick(tree, Qt.Key.Key_K)  # keep the copy: the original is marked instead
    tree.go_to(0, q60_id)
    qtbot.keyClick(tree, Qt.Key.Key_Space)  # and the quality-60 copy is not to be moved
    assert checked(dialog, 0) == [None, True, False]
    dialog.review.set_mark(0, original_id, False)  # nothing of group 0 is acted on
    with qtbot.waitSignal(dialog.action_finished, timeout=WAIT_MS) as done:
        dialog.move_button.click()  # moves group 1's marked copy only
    assert done.args[0].done == [str(library["ref_copy"])]
    qtbot.waitUntil(lambda: dialog.find_button.isEnabled(), timeout=WAIT_MS)
    assert dialog.groups()[0] == [str(library["copy"]), str(library["original"]), str(library["q60"])]
    assert dialog.review.reason(0) == CHOSEN_REASON and checked(dialog, 0) == [None, False, False]
    # The moved copy is still indexed at its new place (outside the reference folder): marked again.
    assert dialog.status.text().startswith("2 groups, 6 images, 1 marked image (")


def test_not_duplicates_for_selected_images_only(qtbot, dialog, library, engine):
    """Two images of a group selected: only their pair is remembered; the group is found again (its third image
    still pairs with both)."""
    from PySide6.QtCore import QItemSelectionModel

    from core.store.decisions import decisions_for, pair

    find(qtbot, dialog)
    original_id, copy_id, _ = dialog.tree.image_ids(0)
    dialog.tree.go_to(0, copy_id)
    for row in (0, 1):  # as a Ctrl+click on the keeper adds it
        dialog.tree.selectionModel().select(member(dialog, 0, row), QItemSelectionModel.SelectionFlag.Select
                                            | QItemSelectionModel.SelectionFlag.Rows)
    with qtbot.waitSignal(dialog.groups_shown, timeout=WAIT_MS):
        dialog.not_dups_button.click()
    qtbot.waitUntil(lambda: dialog.find_button.isEnabled(), timeout=WAIT_MS)
    decisions = decisions_for(engine.store)
    try:
        assert decisions.excluded_pairs() == {pair(original_id, copy_id)}
    finally:
        decisions.close()
    assert "astronaut.jpg, astronaut.jpg: marked “not duplicates” of each other" in dialog.outcome.text()
    assert len(dialog.groups()) == 2 and len(dialog.groups()[0]) == 3
