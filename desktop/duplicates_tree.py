"""The duplicates window's list: a QTreeView over desktop.duplicates_model.DuplicatesModel, with the
window's keys and where the user is (group, image id)."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QSize, Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QTreeView, QWidget

from desktop.duplicates_model import ID_ROLE, DuplicatesModel
from desktop.duplicates_review import Review
from desktop.thumbnails import ThumbnailLoader

ICON = QSize(64, 64)
PREPARE_AHEAD = 60  # groups below the top of the view expanded ahead of the user (a screenful and more)
KEYS = {Qt.Key.Key_Space: "mark", Qt.Key.Key_K: "keep", Qt.Key.Key_C: "compare", Qt.Key.Key_Delete: "trash",
        Qt.Key.Key_N: "next", Qt.Key.Key_P: "previous"}


class DuplicatesTree(QTreeView):
    """Emits `command(name)` for the window's keys (KEYS: they act on the current row, so they are read here,
    not as window shortcuts that would also fire while the threshold box has the focus)."""

    command = Signal(str)

    def __init__(self, loader: ThumbnailLoader, parent: QWidget | None = None):
        super().__init__(parent)
        self.model_ = DuplicatesModel(loader, self)
        self.setModel(self.model_)
        self.setIconSize(ICON)
        self.setUniformRowHeights(False)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setColumnWidth(0, 280)
        self.setColumnWidth(1, 200)
        self._prepared: set[int] = set()  # groups expanded, their header spanning every column
        self.model_.modelReset.connect(self._reset)
        self.verticalScrollBar().valueChanged.connect(lambda _v: self._prepare_near(self._top_group()))

    def show_review(self, review: Review) -> None:
        self.model_.set_review(review)

    def _reset(self) -> None:
        self._prepared.clear()
        self._prepare_near(0)

    def _top_group(self) -> int:
        index = self.indexAt(self.viewport().rect().topLeft())
        return (index.parent().row() if index.parent().isValid() else index.row()) if index.isValid() else 0

    def _prepare_near(self, group: int) -> None:
        """Expand (and span) the groups from a little above `group` to PREPARE_AHEAD below it. Done as the list
        scrolls, not for every group at once: QTreeView.expandAll asks the model about every row (100k
        images: seconds in the GUI thread)."""
        for g in range(max(group - 5, 0), min(group + PREPARE_AHEAD, self.model_.rowCount())):
            if g not in self._prepared:
                self._prepared.add(g)
                self.setFirstColumnSpanned(g, QModelIndex(), True)
                self.expand(self.model_.index(g, 0))

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
        if not 0 <= group < self.model_.rowCount():
            return
        self._prepare_near(group)
        ids = self.image_ids(group)
        index = self.model_.index(ids.index(image_id) if image_id in ids else 0, 0, self.model_.index(group, 0))
        self.setCurrentIndex(index)
        self.scrollTo(index)

    def step_group(self, step: int) -> None:
        """Go to the next (step 1) or previous (-1) group's keeper row."""
        group, _ = self.current()
        count = self.model_.rowCount()
        if count:
            self.go_to(min(max((group if group is not None else -step) + step, 0), count - 1))

    def image_ids(self, group: int) -> list[str]:
        """The group's image ids as shown, the keeper first."""
        return [r.id for r in self.model_.rows(group)]

    def keyPressEvent(self, event) -> None:
        plain = not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if plain and event.key() in KEYS:
            self.command.emit(KEYS[event.key()])
            event.accept()
        else:
            super().keyPressEvent(event)
