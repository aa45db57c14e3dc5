"""The desktop app's screenshot set (issue 14): start, indexing, results, the trail after 8 refines, the details
panel, settings. Every run checks that each can be made (a real window, real thumbnails); with
IMAGE_SEARCH_TEST_SCREENSHOTS=dir the PNGs are also saved there. docs/screenshots/ is made under Xvfb:

    IMAGE_SEARCH_TEST_SCREENSHOTS=docs/screenshots xvfb-run -a -s '-screen 0 1280x800x24' \\
        python -m pytest tests/test_screenshots.py   # then: cp docs/screenshots/results.png docs/screenshot.png
"""
# ruff: noqa: F811 - the fixtures of tests/test_desktop.py are imported by name

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QItemSelectionModel, QTimer
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QWidget

from tests.test_desktop import (  # noqa: F401 - fixtures are found by name
    WAIT_MS,
    indexed_data,
    make_window,
    mixed_folder,
    prefs,
    search_by_drop,
)

SIZE = (1180, 720)  # fits a 1,280 x 800 screen with its panels; small enough for the README
SHOTS = ("start", "indexing", "results", "trail", "details", "settings")


class Shots:
    def __init__(self, folder: str | None):
        self.folder = Path(folder) if folder else None
        self.taken: dict[str, QImage] = {}

    def take(self, name: str, widget: QWidget) -> None:
        image = widget.grab().toImage()
        assert not image.isNull() and image.width() >= 300, name
        self.taken[name] = image
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            assert image.save(str(self.folder / f"{name}.png"), "PNG", 0), name  # 0: the smallest file


def thumbnails_shown(qtbot, window) -> None:
    qtbot.waitUntil(window.view.visible_thumbnails_ready, timeout=WAIT_MS)
    qtbot.wait(50)  # the last thumbnails are drawn


def test_the_screenshot_set_can_be_made(qtbot, make_window, tmp_path, photo_dir, indexed_data):
    shots = Shots(os.environ.get("IMAGE_SEARCH_TEST_SCREENSHOTS"))
    data = tmp_path / "data"
    shutil.copytree(indexed_data, data)
    window = make_window(data)
    window.resize(*SIZE)
    qtbot.waitUntil(lambda: window.image_count is not None, timeout=WAIT_MS)
    qtbot.wait(100)
    shots.take("start", window)

    folder = mixed_folder(tmp_path / "Holiday 2025", photo_dir, copies=4)
    taken = []

    def on_progress(job: dict) -> None:
        if not taken and job["total"] // 3 < job["done"] < job["total"]:  # a committed batch: time left shows
            taken.append(job["done"])
            # Once the status bar has laid out the new text (a layout request is handled after this signal).
            QTimer.singleShot(0, lambda: shots.take("indexing", window))

    window.index_progressed.connect(on_progress)
    with qtbot.waitSignal(window.index_finished, timeout=WAIT_MS):
        window.start_index([str(folder)])
    assert taken, "no progress was shown before the run finished"
    qtbot.waitUntil(lambda: "indexing" in shots.taken, timeout=WAIT_MS)
    window.job_status.close_button.click()

    search_by_drop(qtbot, window, photo_dir / "coffee.jpg")
    thumbnails_shown(qtbot, window)
    shots.take("results", window)

    for n in range(8):
        hits = window.model.hits()
        hit = hits[1 + n % 3]
        with qtbot.waitSignal(window.results_shown, timeout=WAIT_MS):
            window.refine(hit.record, hit)
    thumbnails_shown(qtbot, window)
    crumbs = window.breadcrumb
    assert len(crumbs.labels()) >= 5
    assert crumbs.height() >= crumbs.buttons[-1].sizeHint().height() > 0  # the trail is seen, not only there
    shots.take("trail", window)

    window.act.details.trigger()
    index = window.model.index(2)
    window.view.setCurrentIndex(index)
    window.view.selectionModel().select(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
    qtbot.waitUntil(lambda: window.details.preview.pixmap().width() > 160, timeout=WAIT_MS)
    thumbnails_shown(qtbot, window)
    shots.take("details", window)

    window.open_settings()
    dialog = window.settings_dialog
    qtbot.waitExposed(dialog)
    qtbot.wait(100)
    shots.take("settings", dialog)
    dialog.reject()
    assert set(shots.taken) == set(SHOTS)
