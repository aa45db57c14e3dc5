"""Folder actions of the window: index a folder (chosen or dropped), re-scan all, remove one from the index."""

from __future__ import annotations

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


def rescan(w) -> None:
    """Bring every folder indexed from this app up to date."""
    if roots := w.prefs.roots:
        w.start_index(roots)
    else:
        w.statusBar().showMessage("No folders indexed yet: File → Index Folder… (Ctrl+I)", 8000)


def remove_folder(w) -> None:
    """Forget the images under a folder (one of the app's folders, or any other); the files stay."""
    roots = w.prefs.roots
    if w.session.state != OPEN:
        return
    if roots:
        folder, ok = QInputDialog.getItem(w, "Remove Folder",
                                          "Forget the images under this folder (the files stay on disk):",
                                          roots, 0, False)
    else:
        folder = QFileDialog.getExistingDirectory(w, "Forget the images under a folder", str(Path.home()))
        ok = bool(folder)
    if ok and folder:
        w.jobs.remove([folder])

