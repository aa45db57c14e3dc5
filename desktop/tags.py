"""Tags in the desktop app: the tag editor of the details panel and the Tags… dialog for many images.

Both read and write through the engine (Engine.annotations_of, set_tags, change_tags, tag_counts: the side
data of core/store/annotations.py), always through `call`, a Worker.call (desktop/worker.py), so the index is
never touched on the GUI thread. Tags typed with commas are split there: a tag holds no commas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QStringListModel, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCompleter,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.paths import fold

Call = Callable[..., None]  # Worker.call(job, done, failed)


def typed_tags(text: str) -> list[str]:
    """The tags in what the user typed: comma-separated, trimmed, empty ones dropped."""
    return [t.strip() for t in text.split(",") if t.strip()]


def tag_box(parent: QWidget, placeholder: str) -> tuple[QLineEdit, QStringListModel]:
    """A line edit that completes (case-insensitively, anywhere in the word) from the model's tags."""
    box = QLineEdit(parent)
    box.setPlaceholderText(placeholder)
    known = QStringListModel(parent)
    completer = QCompleter(known, parent)
    completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
    completer.setFilterMode(Qt.MatchFlag.MatchContains)
    box.setCompleter(completer)
    return box, known


def set_known(known: QStringListModel, counts: dict[str, int]) -> None:
    """Offer the tags in use, most used first."""
    known.setStringList(sorted(counts, key=lambda t: (-counts[t], t.casefold())))


class TagEditor(QWidget):
    """The tags of one image: a list (select tags, then Remove or the Delete key) and a box to add tags, with
    completion over the tags in use. It edits nothing itself: `edited` carries the whole new list, and the
    owner shows what the store kept (set_tags)."""

    edited = Signal(list)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.list.setMaximumHeight(120)
        self.input, self.known = tag_box(self, "Add a tag…")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setEnabled(False)
        self.message = QLabel()
        self.message.setObjectName("note")
        self.message.setWordWrap(True)
        self.message.hide()
        row = QHBoxLayout()
        row.addWidget(self.input, 1)
        row.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        layout.addLayout(row)
        layout.addWidget(self.message)
        self.input.returnPressed.connect(self._add)
        self.remove_button.clicked.connect(self._remove_selected)
        self.list.itemSelectionChanged.connect(lambda: self.remove_button.setEnabled(bool(self.list.selectedItems())))
        QShortcut(QKeySequence.StandardKey.Delete, self.list, self._remove_selected,
                  context=Qt.ShortcutContext.WidgetShortcut)

    def set_tags(self, tags: Sequence[str]) -> None:
        self.list.clear()
        self.list.addItems(list(tags))
        self.message.hide()

    def tags(self) -> list[str]:
        return [self.list.item(n).text() for n in range(self.list.count())]

    def show_error(self, text: str) -> None:
        self.message.setText(text)
        self.message.show()

    def _add(self) -> None:
        added = typed_tags(self.input.text())
        self.input.clear()
        if added:
            self.edited.emit(self.tags() + added)

    def _remove_selected(self) -> None:
        gone = {item.text() for item in self.list.selectedItems()}
        if gone:
            self.edited.emit([t for t in self.tags() if t not in gone])


class TagsDialog(QDialog):
    """Tags… for the selected images: each tag any of them carries, checked when all carry it and partly
    checked when some do; check to add a tag to all, uncheck to remove it from all, leave partly checked to
    change nothing. New tags are typed in the box (completed from the tags in use)."""

    applied = Signal()  # the tags were written

    def __init__(self, engine: Any, ids: Sequence[str], call: Call, parent: QWidget | None = None):
        super().__init__(parent)
        self.engine, self.ids, self._call = engine, list(ids), call
        self.setWindowTitle(f"Tags of {len(self.ids)} image{'s' * (len(self.ids) != 1)}")
        self.list = QListWidget()
        self.input, self.known = tag_box(self, "Add a tag to all…")
        self.message = QLabel("Reading the tags…")
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)  # until the tags are read
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addWidget(self.input)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        self.input.returnPressed.connect(self._add)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self._had: dict[str, int] = {}  # tag: how many of the images carried it when the dialog opened
        ids_now = self.ids
        call(lambda: (engine.annotations_of(ids_now), engine.tag_counts()), self._loaded, self._failed)

    def _loaded(self, result) -> None:
        notes, counts = result
        for note in notes.values():
            for tag in note.tags:
                self._had[tag] = self._had.get(tag, 0) + 1
        for tag in sorted(self._had, key=str.casefold):
            self._item(tag, self._had[tag])
        set_known(self.known, counts)
        self.message.setText("Checked: on every image; partly checked: on some (left as they are).")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(True)

    def _item(self, tag: str, count: int) -> QListWidgetItem:
        item = QListWidgetItem(tag if count in (0, len(self.ids)) else f"{tag}  ({count} of {len(self.ids)})")
        item.setData(Qt.ItemDataRole.UserRole, tag)
        flags = item.flags() | Qt.ItemFlag.ItemIsUserCheckable
        if 0 < count < len(self.ids):
            flags |= Qt.ItemFlag.ItemIsUserTristate  # so "leave as it is" can be chosen again
            item.setCheckState(Qt.CheckState.PartiallyChecked)
        else:
            item.setCheckState(Qt.CheckState.Checked if count else Qt.CheckState.Unchecked)
        item.setFlags(flags)
        self.list.addItem(item)
        return item

    def states(self) -> dict[str, Qt.CheckState]:
        """Each listed tag's check state."""
        return {self.list.item(n).data(Qt.ItemDataRole.UserRole): self.list.item(n).checkState()
                for n in range(self.list.count())}

    def _add(self) -> None:
        items = {fold(self.list.item(n).data(Qt.ItemDataRole.UserRole)): self.list.item(n)
                 for n in range(self.list.count())}
        for tag in typed_tags(self.input.text()):
            if fold(tag) not in items:
                items[fold(tag)] = self._item(tag, 0)
            items[fold(tag)].setCheckState(Qt.CheckState.Checked)
        self.input.clear()

    def accept(self) -> None:
        states = self.states()
        add = [t for t, s in states.items() if s == Qt.CheckState.Checked and self._had.get(t, 0) < len(self.ids)]
        remove = [t for t, s in states.items() if s == Qt.CheckState.Unchecked and self._had.get(t, 0)]
        if not add and not remove:
            super().accept()
            return
        self.buttons.setEnabled(False)
        engine, ids = self.engine, self.ids
        self._call(lambda: engine.change_tags(ids, add, remove), self._written, self._failed)

    def _written(self, _tags) -> None:
        self.applied.emit()
        super().accept()

    def _failed(self, exc: Exception) -> None:
        self.message.setText(f"Tags not changed: {exc}")
        self.buttons.setEnabled(True)
