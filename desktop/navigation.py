"""The query chain: Back/Forward history and the breadcrumb that shows it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

import shiboken6
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QScrollArea, QSizePolicy, QToolButton, QWidget

T = TypeVar("T")
CRUMBS = 6  # older steps fold into "…" (Back and the history still reach them)
MIN_CRUMB_PX = 72  # a crumb is never elided below this (it would say nothing): the trail scrolls instead


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
    the window's minimum width (issue 14: refines pushed the window past the screen). Long labels are elided
    in the middle (QFontMetrics.elidedText: a file name keeps its start and extension) to share that room, so
    every crumb shows whole (a new user saw the first one cut mid-word at the edge); only when even
    MIN_CRUMB_PX each does not fit is the current step scrolled into view, and the wheel scrolls the rest."""

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
        self._full: list[str] = []  # the visible crumbs' labels, unelided
        self._current: QToolButton | None = None

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
        self._full = list(labels[first:])
        if first:
            self._layout.addWidget(self._separator("…"))
        for n in range(first, len(labels)):
            if n > first:
                self._layout.addWidget(self._separator("›"))
            self.buttons.append(self._crumb(n, labels[n], n == current))
            self._layout.addWidget(self.buttons[-1])
        self._layout.addStretch(1)
        for i in range(self._layout.count()):  # shown now: a layout leaves widgets not yet shown out of its size
            if (widget := self._layout.itemAt(i).widget()) is not None:
                widget.show()
        self._fit()
        self.setFixedHeight(self._row.sizeHint().height())
        self._current = self.buttons[current - first] if 0 <= current - first < len(self.buttons) else None
        QTimer.singleShot(0, self._show_current)

    def _fit(self) -> None:
        """Elide the crumbs so the trail fits the viewport's width: short ones keep their whole label and
        give their room to long ones, which share the rest equally (never below MIN_CRUMB_PX)."""
        if not self.buttons:
            return
        others = [self._layout.itemAt(i).widget() for i in range(self._layout.count())]
        fixed = sum(w.sizeHint().width() for w in others if w is not None and w not in self.buttons)
        room = self.viewport().width() - fixed - self._layout.spacing() * (self._layout.count() - 1)
        wanted = []  # each crumb's (padding, width with its whole label), in pixels
        for button, label in zip(self.buttons, self._full, strict=True):
            button.setText(label)
            padding = button.sizeHint().width() - button.fontMetrics().horizontalAdvance(label)
            wanted.append((padding, button.sizeHint().width()))
        widths = dict.fromkeys(range(len(wanted)), 0)
        left = list(range(len(wanted)))
        for n in sorted(left, key=lambda i: wanted[i][1]):  # narrowest first: what they leave goes to the rest
            share = max(MIN_CRUMB_PX, room // len(left))
            widths[n] = min(wanted[n][1], share)
            room -= widths[n]
            left.remove(n)
        for n, (button, label) in enumerate(zip(self.buttons, self._full, strict=True)):
            padding, whole = wanted[n]
            if widths[n] < whole:  # (elidedText given exactly the whole width may still elide: rounding)
                button.setText(button.fontMetrics().elidedText(label, Qt.TextElideMode.ElideMiddle,
                                                               widths[n] - padding))

    def _show_current(self) -> None:
        if self._current is not None and shiboken6.isValid(self._current):
            self.ensureWidgetVisible(self._current, 8, 0)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self._fit()
        self._show_current()  # narrowed (a panel opened, the window shrank): the current step stays in view

    def labels(self) -> list[str]:
        """The visible steps' full labels (for tests and accessibility)."""
        return [b.toolTip() for b in self.buttons]

    def _crumb(self, n: int, label: str, current: bool) -> QToolButton:
        button = QToolButton(self._row)
        button.setText(label)  # elided to the room there is by _fit
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
