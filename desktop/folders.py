"""Folder actions of the window: index a folder (chosen or dropped), re-scan all, remove one from the index.

"All" and the folders offered for removal are the app's own (Preferences.roots) and every other folder the
index holds images from, whoever indexed it (Engine.indexed_roots, asked in the search worker).
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from desktop.session import OPEN


def offer_to_index(w, folder: str) -> None:
    """A dropped folder: ask whether to index it (it cannot be a query image)."""
    box = w.folder_box = QMessageBox(QMessageBox.Icon.Question, "Index Folder",
                                     f"{folder} is a folder. Add its images to the index?",
                                     QMessageBox.StandardButton.Cancel, w)
    box.addButton("Index Folder", QMessageBox.ButtonRole.AcceptRole).clicked.connect(
        lambda: (w.prefs.add_root(folder), w.start_index([folder])))
    box.open()


def index_folder(w) -> None:
    folder = QFileDialog.getExistingDirectory(w, "Index a folder of images", str(Path.home()))
    if folder:
        w.prefs.add_root(folder)
        w.start_index([folder])


def all_roots(engine, app_roots: list[str]) -> list[str]:
    """The app's folders, then the other folders the index holds images from (indexed by the CLI or the HTTP
    API too; one spelled through a symlink as an app folder is that folder). Reads the index: call it in a
    worker."""
    spelled = {os.path.realpath(r) for r in app_roots} | set(app_roots)
    return [*app_roots, *(r for r in engine.indexed_roots() if r not in spelled)]


def rescan(w) -> None:
    """Bring every indexed folder up to date."""
    if w.session.state != OPEN:
        w.statusBar().showMessage("No index is open.", 5000)
        return
    engine, app_roots = w.engine, w.prefs.roots
    w.searcher.call(lambda: all_roots(engine, app_roots), lambda roots: _rescan(w, roots))


def _rescan(w, roots: list[str]) -> None:
    if roots:
        w.start_index(roots)
    else:
        w.statusBar().showMessage("No folders indexed yet: File → Index Folder… (Ctrl+I)", 8000)


def remove_folder(w) -> None:
    """Forget the images under a folder (one of the indexed folders, or any other); the files stay."""
    if w.session.state != OPEN:
        return
    engine, app_roots = w.engine, w.prefs.roots
    w.searcher.call(lambda: all_roots(engine, app_roots), lambda roots: _remove_one_of(w, roots))


def _remove_one_of(w, roots: list[str]) -> None:
    if roots:
        folder, ok = QInputDialog.getItem(w, "Remove Folder",
                                          "Forget the images under this folder (the files stay on disk):",
                                          roots, 0, False)
    else:
        folder = QFileDialog.getExistingDirectory(w, "Forget the images under a folder", str(Path.home()))
        ok = bool(folder)
    if ok and folder:
        w.jobs.remove([folder])
