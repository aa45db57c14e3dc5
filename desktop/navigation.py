"""The query chain: Back/Forward history and the breadcrumb that shows it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget

T = TypeVar("T")
CRUMBS = 6  # older steps fold into "…" so the row never pushes the window wider
CRUMB_CHARS = 28


class History(Generic[T]):
    """A browser-style history: a new step drops the steps one had gone back from."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self.index = -1

    @property
    def current(self) -> T | None:
        return self.items[self.index] if self.index >= 0 else None

    def push(self, item: T) -> None:
        del self.items[self.index + 1 :]
        self.items.append(item)
        self.index = len(self.items) - 1

    def can_back(self) -> bool:
        return self.index > 0

    def can_forward(self) -> bool:
        return self.index < len(self.items) - 1

    def go(self, index: int) -> T | None:
        if 0 <= index < len(self.items):
            self.index = index
        return self.current

    def clear(self) -> None:
        self.items.clear()
        self.index = -1


class Breadcrumb(QWidget):
    """Each step of the chain as a link; the current one bold. Clicking a step goes back (or forward) to it."""

    jumped = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("breadcrumb")
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(2)
        self.buttons: list[QToolButton] = []

    def set_trail(self, labels: Sequence[str], current: int) -> None:
        while (item := self._layout.takeAt(0)) is not None:
            if item.widget() is not None:
                item.widget().deleteLater()
        self.buttons = []
        first = max(0, len(labels) - CRUMBS)
        if first:
            self._layout.addWidget(self._separator("…"))
        for n in range(first, len(labels)):
            if n > first:
                self._layout.addWidget(self._separator("›"))
            self.buttons.append(self._crumb(n, labels[n], n == current))
            self._layout.addWidget(self.buttons[-1])
        self._layout.addStretch(1)

    def labels(self) -> list[str]:
        """The visible steps' full labels (for tests and accessibility)."""
        return [b.toolTip() for b in self.buttons]

    def _crumb(self, n: int, label: str, current: bool) -> QToolButton:
        button = QToolButton(self)
        short = label if len(label) <= CRUMB_CHARS else label[: CRUMB_CHARS - 1] + "…"
        button.setText(short)
        button.setToolTip(label)
        button.setAutoRaise(True)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        button.setProperty("current", current)
        font = button.font()
        font.setBold(current)
        button.setFont(font)
        button.clicked.connect(lambda: self.jumped.emit(n))
        return button

    def _separator(self, text: str) -> QLabel:
        label = QLabel(text, self)
        label.setObjectName("crumbSeparator")
        return label
