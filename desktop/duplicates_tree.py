"""The duplicates window's list: a QTreeView over a QStandardItemModel, one top-level row per group and one
child row per member, the keeper first. Marks are the members' check boxes; thumbnails come from the
window's ThumbnailLoader (desktop/thumbnails.py) and are set when they arrive.
"""

from __future__ import annotations

import time

import shiboken6
from PySide6.QtCore import QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QTreeView, QWidget

from core.duplicates import KEEPER
from desktop import files
from desktop.duplicates_review import Review, Row
from desktop.index_widgets import plural
from desktop.thumbnails import ThumbnailLoader, thumbnail_key

ID_ROLE = Qt.ItemDataRole.UserRole  # a member row's image id
GROUP_ROLE = Qt.ItemDataRole.UserRole + 1  # the group's index in Review.groups (top-level rows)
ICON = QSize(64, 64)
COLUMNS = ["Image", "Kind", "Score", "Size", "Dimensions", "Date", "Folder"]
KEEPER_BADGE = "★ keep"
KEYS = {Qt.Key.Key_Space: "mark", Qt.Key.Key_K: "keep", Qt.Key.Key_C: "compare", Qt.Key.Key_Delete: "trash",
        Qt.Key.Key_N: "next", Qt.Key.Key_P: "previous"}


class DuplicatesTree(QTreeView):
    """Emits `mark_changed(group, image id, marked)` when the user ticks or unticks a box, and `command(name)`
    for the window's keys (KEYS: they act on the current row, so they are read here, not as window shortcuts
    that would also fire while the threshold box has the focus)."""

    mark_changed = Signal(int, str, bool)
    command = Signal(str)

    def __init__(self, loader: ThumbnailLoader, parent: QWidget | None = None):
        super().__init__(parent)
        self.model_ = QStandardItemModel(self)
        self.model_.setHorizontalHeaderLabels(COLUMNS)
        self.setModel(self.model_)
        self.setIconSize(ICON)
        self.setUniformRowHeights(False)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setColumnWidth(0, 280)
        self.setColumnWidth(1, 200)
        self._loader = loader
        self._icons: dict[str, QIcon] = {}
        self._waiting: dict[str, list[QStandardItem]] = {}
        self._filling = False
        loader.loaded.connect(self._thumbnail_loaded)
        self.model_.itemChanged.connect(self._item_changed)

    # -- filling ----------------------------------------------------------------------------------
    def show_review(self, review: Review) -> None:
        self.setModel(None)  # filled detached: a view re-lays itself out on every row added (quadratic)
        self.model_.removeRows(0, self.model_.rowCount())
        self._waiting.clear()
        self._loader.clear()
        for group in range(len(review.groups)):
            header = QStandardItem()
            header.setEditable(False)
            self.model_.appendRow(header)
            self.fill_group(review, group)
        self.setModel(self.model_)
        for group in range(len(review.groups)):
            self.setFirstColumnSpanned(group, QModelIndex(), True)
        self.expandAll()

    def fill_group(self, review: Review, group: int) -> None:
        """(Re)write group `group`'s rows from `review` (after keep-this, or a refused mark)."""
        self._filling = True
        try:
            header = self.update_header(review, group)
            header.removeRows(0, header.rowCount())
            for row in review.rows(group):
                header.appendRow(self._row(row, review.reason(group)))
        finally:
            self._filling = False

    def update_header(self, review: Review, group: int) -> QStandardItem:
        """Group `group`'s top-level row: its kind, size, keeper with the reason, and how many are marked."""
        header = self.model_.item(group)
        header.setData(group, GROUP_ROLE)
        rows = review.rows(group)
        header.setText(f"Group {group + 1} · {review.groups[group].kind} · {plural(len(rows), 'image')} · "
                       f"keep {rows[0].member.record.name} ({review.reason(group)}) · "
                       f"{sum(r.marked for r in rows)} marked")
        return header

    def drop_group(self, review: Review, group: int) -> None:
        """Remove group `group`'s rows (Review.drop already done); the groups after it are renumbered."""
        self.model_.removeRow(group)
        for n in range(group, self.model_.rowCount()):
            self.fill_group(review, n)

    def _row(self, row: Row, reason: str) -> list[QStandardItem]:
        record = row.member.record
        image = QStandardItem(record.name)
        image.setData(record.id, ID_ROLE)
        image.setToolTip(record.path)
        image.setEditable(False)
        if row.markable:
            image.setCheckable(True)
            image.setCheckState(Qt.CheckState.Checked if row.marked else Qt.CheckState.Unchecked)
        elif row.member.reference:
            image.setToolTip(f"{record.path}\nIn a reference folder: never marked, never moved")
        key = thumbnail_key(record)
        if key in self._icons:
            image.setIcon(self._icons[key])
        else:
            self._waiting.setdefault(key, []).append(image)
            self._loader.request(record)
        kind = f"{KEEPER_BADGE} ({reason})" if row.kind == KEEPER else row.kind
        if row.member.variant:
            kind += f" ({row.member.variant})"
        if row.member.reference:
            kind += " · reference"
        date = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.mtime_ns / 1e9))
        texts = [kind, f"{row.score:.4f}", files.human_size(record.size), f"{record.width} × {record.height}", date,
                 record.folder]
        cells = [image] + [QStandardItem(t) for t in texts]
        for cell in cells[1:]:
            cell.setEditable(False)
        return cells

    # -- where the user is ------------------------------------------------------------------------
    def current(self) -> tuple[int | None, str | None]:
        """(group, image id) of the current row; the image id is None on a group's header row."""
        index = self.currentIndex().siblingAtColumn(0)
        if not index.isValid():
            return None, None
        if not index.parent().isValid():
            return index.row(), None
        return index.parent().row(), index.data(ID_ROLE)

    def selected_members(self) -> list[tuple[int, str]]:
        """(group, image id) of the selected member rows, top to bottom."""
        found = [(i.parent().row(), i.row(), i.data(ID_ROLE)) for i in self.selectionModel().selectedRows(0)
                 if i.parent().isValid()]
        return [(g, image_id) for g, _, image_id in sorted(found)]

    def go_to(self, group: int, image_id: str | None = None) -> None:
        """Make a member (or the group's keeper row) current and visible."""
        header = self.model_.item(group)
        if header is None:
            return
        row = next((n for n in range(header.rowCount()) if header.child(n).data(ID_ROLE) == image_id), 0)
        index = header.child(row).index() if header.rowCount() else header.index()
        self.setCurrentIndex(index)
        self.scrollTo(index)

    def step_group(self, step: int) -> None:
        """Go to the next (step 1) or previous (-1) group's keeper row."""
        group, _ = self.current()
        count = self.model_.rowCount()
        if count:
            self.go_to(min(max((group if group is not None else -step) + step, 0), count - 1))

    def image_ids(self, group: int) -> list[str]:
        header = self.model_.item(group)
        return [header.child(n).data(ID_ROLE) for n in range(header.rowCount())]

    # -- events -----------------------------------------------------------------------------------
    def keyPressEvent(self, event) -> None:
        plain = not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if plain and event.key() in KEYS:
            self.command.emit(KEYS[event.key()])
            event.accept()
        else:
            super().keyPressEvent(event)

    def _item_changed(self, item: QStandardItem) -> None:
        if not self._filling and item.isCheckable() and item.parent() is not None:
            self.mark_changed.emit(item.parent().row(), item.data(ID_ROLE), item.checkState() == Qt.CheckState.Checked)

    def _thumbnail_loaded(self, key: str, image: QImage) -> None:
        if image.isNull():
            return
        icon = self._icons[key] = QIcon(QPixmap.fromImage(image))
        for item in self._waiting.pop(key, ()):
            if shiboken6.isValid(item):  # not removed meanwhile (keep-this rewrites a group's rows)
                item.setIcon(icon)
