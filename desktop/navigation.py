"""The query chain: Back/Forward history and the breadcrumb that shows it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QScrollArea, QSizePolicy, QToolButton, QWidget

T = TypeVar("T")
CRUMBS = 6  # older steps fold into "…" (Back and the history still reach them)
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


class Breadcrumb(QScrollArea):
    """Each step of the chain as a link; the current one bold. Clicking a step goes back (or forward) to it.

    A scroll area with no scroll bars: however long the trail, it takes the room it is given and never sets
    the window's minimum width (issue 14: refines pushed the window past the screen); the current step is
    scrolled into view, and the wheel scrolls the rest."""

    jumped = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("breadcrumb")
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setWidgetResizable(True)
        self._row = QWidget()
        self._row.setObjectName("breadcrumbRow")
        self._layout = QHBoxLayout(self._row)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(2)
        self.setWidget(self._row)
        self.buttons: list[QToolButton] = []

    def minimumSizeHint(self) -> QSize:
        return QSize(0, self._row.sizeHint().height())

    def sizeHint(self) -> QSize:
        return QSize(200, self._row.sizeHint().height())

    def wheelEvent(self, event) -> None:
        bar = self.horizontalScrollBar()
        bar.setValue(bar.value() - event.angleDelta().y() - event.angleDelta().x())

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
        self.setFixedHeight(self._row.sizeHint().height())
        if 0 <= current - first < len(self.buttons):
            shown = self.buttons[current - first]
            QTimer.singleShot(0, lambda: self.ensureWidgetVisible(shown, 8, 0))

    def labels(self) -> list[str]:
        """The visible steps' full labels (for tests and accessibility)."""
        return [b.toolTip() for b in self.buttons]

    def _crumb(self, n: int, label: str, current: bool) -> QToolButton:
        button = QToolButton(self._row)
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
        label = QLabel(text, self._row)
        label.setObjectName("crumbSeparator")
        return label
