"""The folder manager (File → Manage Folders…): the indexed folders, with their image counts and last scan
time; Add…, Re-scan and Remove.

The list is the app's own folders (Preferences.roots, kept as folders are added and removed here, shown at
once) and then every folder the index holds images from, whoever indexed it (the CLI or the HTTP API too:
Engine.indexed_roots). The last scan time is the app's own record. Those roots and the image counts come
from the search worker (one pass over the index's records), never from the GUI thread.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from PySide6.QtCore import QDateTime, QLocale, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
)

from core.scan import is_under
from desktop.details import DATE_FORMAT
from desktop.folders import all_roots
from desktop.index_widgets import plural
from desktop.session import OPEN


def count_by_folder(store, folders: list[str]) -> dict[str, int]:
    """How many indexed images lie under each of `folders` (one pass over `store.records()`; an image under
    two nested folders counts in both)."""
    counts: Counter[str] = Counter()
    for record in store.records():
        for folder in folders:
            if any(is_under(p, folder) for p in record.paths):
                counts[folder] += 1
    return {folder: counts[folder] for folder in folders}


class FolderManager(QDialog):
    counted = Signal()  # the image counts are on screen

    def __init__(self, window):
        super().__init__(window)
        self.window_ = window
        self.setWindowTitle("Indexed Folders")
        self.resize(640, 360)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Folder", "Images", "Last scan"])
        self.tree.setRootIsDecorated(False)
        self.tree.setColumnWidth(0, 360)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        self.note = QLabel()
        self.note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        self.add_button = QPushButton("Add…")
        self.rescan_button = QPushButton("Re-scan")
        self.remove_button = QPushButton("Remove")
        for button in (self.add_button, self.rescan_button, self.remove_button):
            buttons.addButton(button, QDialogButtonBox.ButtonRole.ActionRole)
        self.add_button.clicked.connect(self.add)
        self.rescan_button.clicked.connect(self.rescan)
        self.remove_button.clicked.connect(self.remove)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.note)
        layout.addWidget(buttons)
        self.question: QMessageBox | None = None
        window.index_finished.connect(lambda _job: self.isVisible() and self.refresh())
        window.jobs.busy_changed.connect(lambda _busy: self._update_buttons())

    def selected(self) -> str | None:
        items = self.tree.selectedItems()
        return items[0].data(0, Qt.ItemDataRole.UserRole) if items else None

    def refresh(self) -> None:
        """List the app's folders now; the index's other folders and every image count follow from the worker."""
        w = self.window_
        roots = w.prefs.roots
        self._list(dict.fromkeys(roots, None))
        if w.session.state == OPEN:
            engine = w.engine
            w.searcher.call(lambda: count_by_folder(engine.store, all_roots(engine, roots)), self._show_counts)

    def _list(self, counts: dict[str, int | None]) -> None:
        """Show `counts` (folder -> image count, None while counting), keeping the selection."""
        w, chosen = self.window_, self.selected()
        self.tree.clear()
        for folder, count in counts.items():
            when = w.prefs.last_scan(folder)
            scanned = "—" if when is None else QLocale().toString(QDateTime.fromSecsSinceEpoch(int(when)), DATE_FORMAT)
            item = QTreeWidgetItem([folder, "…" if count is None else f"{count:,}", scanned])
            item.setData(0, Qt.ItemDataRole.UserRole, folder)
            item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.tree.addTopLevelItem(item)
            item.setSelected(folder == chosen)
        self.note.setText("No folders indexed yet: Add… one." if not counts else
                          "Re-scan brings a folder up to date (new, changed and deleted files). Remove forgets "
                          "its images; the files stay on disk.")
        self._update_buttons()

    def _show_counts(self, counts: dict[str, int]) -> None:
        self._list(counts)
        self.counted.emit()

    def _update_buttons(self) -> None:
        ready = self.window_.session.state == OPEN and not self.window_.jobs.busy
        self.add_button.setEnabled(ready)
        self.rescan_button.setEnabled(ready and self.selected() is not None)
        self.remove_button.setEnabled(ready and self.selected() is not None)

    def add(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Index a folder of images", str(Path.home()))
        if folder:
            self.window_.prefs.add_root(folder)
            self.window_.start_index([folder])
            self.refresh()

    def rescan(self) -> None:
        """Re-scan the selected folder; images found missing but kept (an absent drive, an emptied folder)
        are forgotten only after asking."""
        if (folder := self.selected()) is not None:
            self.window_.start_index([folder], done=lambda report: self._ask_to_prune(folder, report))
            self._update_buttons()

    def _ask_to_prune(self, folder: str, report) -> None:
        missing = sum(count for _, count, _ in report.missing_kept)
        if not missing:
            return
        reasons = "; ".join(reason for _, _, reason in report.missing_kept)
        box = self.question = QMessageBox(
            QMessageBox.Icon.Question, "Missing Images",
            f"{plural(missing, 'image')} under {folder} could not be found ({reasons}). They were kept in "
            "case the folder is only out of reach (a drive not connected). Forget them?",
            QMessageBox.StandardButton.NoButton, self)
        box.addButton("Keep", QMessageBox.ButtonRole.RejectRole)
        box.addButton("Forget Them", QMessageBox.ButtonRole.DestructiveRole).clicked.connect(
            lambda: self.window_.start_index([folder], prune_missing=True))
        box.open()

    def remove(self) -> None:
        if (folder := self.selected()) is None:
            return
        box = self.question = QMessageBox(
            QMessageBox.Icon.Question, "Remove Folder",
            f"Forget the images under {folder}? The files stay on disk.", QMessageBox.StandardButton.Cancel, self)
        box.addButton("Remove", QMessageBox.ButtonRole.DestructiveRole).clicked.connect(
            lambda: self.window_.jobs.remove([folder]))
        box.open()
