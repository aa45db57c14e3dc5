"""Tools → Find Duplicates: groups of near-identical images, with open / reveal / find similar."""

from __future__ import annotations

from collections.abc import Callable

import shiboken6
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.store import ImageRecord
from desktop import files
from desktop.index_widgets import plural
from desktop.thumbnails import ThumbnailLoader, thumbnail_key

RECORD_ROLE = Qt.ItemDataRole.UserRole  # the ImageRecord of a file row
ICON = QSize(64, 64)


class DuplicatesDialog(QDialog):
    find_similar = Signal(object)  # ImageRecord

    def __init__(self, find_groups: Callable[[float, Callable, Callable], None], loader: ThumbnailLoader,
                 parent: QWidget | None = None):
        """`find_groups(threshold, done, failed)` runs the search as a job of the engine's queue (core.jobs)."""
        super().__init__(parent)
        self.setWindowTitle("Find Duplicates")
        self.resize(820, 560)
        self._find_groups = find_groups
        self._items: dict[str, list[QTreeWidgetItem]] = {}
        self._loader = loader
        loader.loaded.connect(self._thumbnail_loaded)

        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.5, 1.0)
        self.threshold.setSingleStep(0.01)
        self.threshold.setDecimals(3)
        self.threshold.setValue(0.95)
        self.threshold.setToolTip("Images at least this similar (cosine similarity) are grouped together")
        self.find_button = QPushButton("Find")
        self.find_button.setDefault(True)
        self.find_button.clicked.connect(self.find)
        self.status = QLabel()
        top = QHBoxLayout()
        top.addWidget(QLabel("Similarity at least"))
        top.addWidget(self.threshold)
        top.addWidget(self.find_button)
        top.addWidget(self.status, 1)

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Image", "Folder", "Size"])
        self.tree.setIconSize(ICON)
        self.tree.setColumnWidth(0, 300)
        self.tree.setColumnWidth(1, 340)
        self.tree.itemDoubleClicked.connect(lambda item, _col: self._open(item))
        self.tree.currentItemChanged.connect(self._selection_changed)

        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(lambda: self._open(self.tree.currentItem()))
        self.reveal_button = QPushButton("Reveal in Folder")
        self.reveal_button.clicked.connect(lambda: self._with_record(lambda r: files.reveal(r.path)))
        self.similar_button = QPushButton("Find Similar")
        self.similar_button.clicked.connect(lambda: self._with_record(self.find_similar.emit))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        for button in (self.open_button, self.reveal_button, self.similar_button):
            buttons.addButton(button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.tree, 1)
        layout.addWidget(buttons)
        self._selection_changed()

    def find(self) -> None:
        self.find_button.setEnabled(False)
        self.status.setText("Comparing every pair of images…")
        self._find_groups(self.threshold.value(), self._show, self._failed)

    def groups(self) -> list[list[str]]:
        """The paths shown, group by group."""
        return [[g.child(i).data(0, RECORD_ROLE).path for i in range(g.childCount())]
                for g in (self.tree.topLevelItem(n) for n in range(self.tree.topLevelItemCount()))]

    def _show(self, groups: list[list[ImageRecord]]) -> None:
        if not shiboken6.isValid(self):
            return
        self.find_button.setEnabled(True)
        self.tree.clear()
        self._items.clear()
        for n, group in enumerate(groups, 1):
            top = QTreeWidgetItem([f"Group {n} · {len(group)} images"])
            top.setFirstColumnSpanned(True)
            self.tree.addTopLevelItem(top)
            for record in group:
                item = QTreeWidgetItem([record.name, record.folder, files.human_size(record.size)])
                item.setData(0, RECORD_ROLE, record)
                item.setToolTip(0, record.path)
                top.addChild(item)
                key = thumbnail_key(record)
                self._items.setdefault(key, []).append(item)
                self._loader.request(record)
            top.setExpanded(True)
        total = sum(len(g) for g in groups)
        self.status.setText(f"{plural(len(groups), 'group')}, {plural(total, 'image')}" if groups
                            else "No near-duplicates found.")

    def _failed(self, exc: Exception | str) -> None:
        if shiboken6.isValid(self):
            self.find_button.setEnabled(True)
            self.status.setText(f"Failed: {exc}")

    def _thumbnail_loaded(self, key: str, image: QImage) -> None:
        for item in self._items.get(key, ()):
            if not image.isNull():
                item.setIcon(0, QIcon(QPixmap.fromImage(image)))

    def _record(self, item: QTreeWidgetItem | None) -> ImageRecord | None:
        return item.data(0, RECORD_ROLE) if item is not None else None

    def _with_record(self, action) -> None:
        record = self._record(self.tree.currentItem())
        if record is not None:
            action(record)

    def _open(self, item: QTreeWidgetItem | None) -> None:
        record = self._record(item)
        if record is not None:
            files.open_file(record.path)

    def _selection_changed(self) -> None:
        has_file = self._record(self.tree.currentItem()) is not None
        for button in (self.open_button, self.reveal_button, self.similar_button):
            button.setEnabled(has_file)
