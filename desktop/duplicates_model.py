"""The duplicates list as a Qt item model over desktop.duplicates_review.Review: one top-level row per group,
one child row per member (the keeper first). Nothing is copied into items: rows are read from the review
when the view asks, and thumbnails are requested only for the rows the view paints, so a list of 100k images
opens at once. Marks are the check boxes of column 0 (the keeper's and reference-folder files' have none).
"""

from __future__ import annotations

import time

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QIcon, QImage, QPixmap

from core.duplicates import KEEPER
from desktop import files
from desktop.duplicates_review import Review, Row
from desktop.index_widgets import plural
from desktop.thumbnails import ThumbnailLoader, thumbnail_key

ID_ROLE = Qt.ItemDataRole.UserRole  # a member row's image id
COLUMNS = ["Image", "Kind", "Score", "Size", "Dimensions", "Date", "Folder"]
KEEPER_BADGE = "★ keep"
GROUP = 0  # internalId of a top-level row; a member row's is its group + 1
ROOT = QModelIndex()  # the invisible root, Qt's default parent


class DuplicatesModel(QAbstractItemModel):
    def __init__(self, loader: ThumbnailLoader, parent: QObject | None = None):
        super().__init__(parent)
        self.review = Review([])
        self._rows: dict[int, list[Row]] = {}  # group -> its rows, built when first shown
        self._loader = loader
        self._icons: dict[str, QIcon] = {}
        self._waiting: dict[str, QPersistentModelIndex] = {}  # thumbnail key -> the row that asked
        loader.loaded.connect(self._thumbnail_loaded)

    def set_review(self, review: Review) -> None:
        self.beginResetModel()
        self.review, self._rows = review, {}
        self._waiting.clear()
        self._loader.clear()
        self.endResetModel()

    def rows(self, group: int) -> list[Row]:
        if group not in self._rows:
            self._rows[group] = self.review.rows(group)
        return self._rows[group]

    def refresh_group(self, group: int) -> None:
        """Show group `group` as the review has it now (after keep-this or a mark)."""
        self._rows.pop(group, None)
        header = self.index(group, 0)
        self.dataChanged.emit(header, header.siblingAtColumn(len(COLUMNS) - 1))
        count = len(self.review.groups[group].members)
        self.dataChanged.emit(self.index(0, 0, header), self.index(count - 1, len(COLUMNS) - 1, header))

    def drop_group(self, group: int) -> None:
        """Take group `group` off the list and the review (after "not duplicates"). A reset, not a row removal:
        member rows name their group by number (internalId), which every later group's would change."""
        self.beginResetModel()
        self.review.drop(group)
        self._rows = {}
        self._waiting.clear()
        self.endResetModel()

    # -- QAbstractItemModel -----------------------------------------------------------------------
    def index(self, row: int, column: int, parent: QModelIndex = ROOT) -> QModelIndex:
        if not self.hasIndex(row, column, parent):
            return QModelIndex()
        return self.createIndex(row, column, GROUP if not parent.isValid() else parent.row() + 1)

    def parent(self, index: QModelIndex = ROOT) -> QModelIndex:
        if not index.isValid() or index.internalId() == GROUP:
            return QModelIndex()
        return self.createIndex(index.internalId() - 1, 0, GROUP)

    def rowCount(self, parent: QModelIndex = ROOT) -> int:
        if not parent.isValid():
            return len(self.review.groups)
        if parent.internalId() == GROUP and parent.column() == 0:
            return len(self.review.groups[parent.row()].members)
        return 0

    def columnCount(self, parent: QModelIndex = ROOT) -> int:
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.column() == 0 and index.internalId() != GROUP and self._row(index).markable:
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        if index.internalId() == GROUP:
            shown = role == Qt.ItemDataRole.DisplayRole and index.column() == 0
            return self._group_text(index.row()) if shown else None
        row, column = self._row(index), index.column()
        record = row.member.record
        if role == Qt.ItemDataRole.DisplayRole:
            return self._cell(row, index.parent().row(), column)
        if role == ID_ROLE:
            return row.id
        if role == Qt.ItemDataRole.ToolTipRole:
            return record.path + ("\nIn a reference folder: never marked, never moved" if row.member.reference else "")
        if column == 0 and role == Qt.ItemDataRole.CheckStateRole and row.markable:
            return Qt.CheckState.Checked if row.marked else Qt.CheckState.Unchecked
        if column == 0 and role == Qt.ItemDataRole.DecorationRole:
            key = thumbnail_key(record)
            if key not in self._icons and key not in self._waiting:
                self._waiting[key] = QPersistentModelIndex(index)
                self._loader.request(record)
            icon = self._icons.get(key)
            return icon if icon is not None and not icon.isNull() else None
        return None

    def setData(self, index: QModelIndex, value, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.CheckStateRole or not index.isValid() or index.internalId() == GROUP:
            return False
        group = index.parent().row()
        checked = Qt.CheckState(value) == Qt.CheckState.Checked
        if not self.review.set_mark(group, self._row(index).id, checked):
            return False
        self.refresh_group(group)
        return True

    # -- internals --------------------------------------------------------------------------------
    def _row(self, index: QModelIndex) -> Row:
        return self.rows(index.internalId() - 1)[index.row()]

    def _group_text(self, group: int) -> str:
        rows = self.rows(group)
        return (f"Group {group + 1} · {self.review.groups[group].kind} · {plural(len(rows), 'image')} · "
                f"keep {rows[0].member.record.name} ({self.review.reason(group)}) · "
                f"{sum(r.marked for r in rows)} marked")

    def _cell(self, row: Row, group: int, column: int) -> str:
        record = row.member.record
        if column == 0:
            return record.name
        if column == 1:
            kind = f"{KEEPER_BADGE} ({self.review.reason(group)})" if row.kind == KEEPER else row.kind
            copy_of = row.member.copy_of
            if row.kind != KEEPER and copy_of and copy_of != self.rows(group)[0].id:  # a copy of another member
                kind += f" (copy of {next(r.member.record.name for r in self.rows(group) if r.id == copy_of)})"
            return kind + (f" ({row.member.variant})" if row.member.variant else "") + (
                " · reference" if row.member.reference else "")
        if column == 2:
            return f"{row.score:.4f}"
        if column == 3:
            return files.human_size(record.size)
        if column == 4:
            return f"{record.width} × {record.height}"
        if column == 5:
            return time.strftime("%Y-%m-%d %H:%M", time.localtime(record.mtime_ns / 1e9))
        return record.folder

    def _thumbnail_loaded(self, key: str, image: QImage) -> None:
        asked = self._waiting.pop(key, None)
        self._icons[key] = QIcon(QPixmap.fromImage(image)) if not image.isNull() else QIcon()  # null: asked once
        # The row may show another member by now (keep-this): it asks again when painted.
        if asked is not None and asked.isValid() and not image.isNull():
            index = self.index(asked.row(), 0, asked.parent())
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])
