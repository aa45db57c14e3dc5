"""How many results, the similarity range and the file/folder name filter (placed by the window)."""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QLineEdit, QSpinBox, QToolButton, QWidget

from core.store import SearchFilter

SETTLE_MS = 250  # typing in the filter box or spinning k searches once the user pauses
MAX_RESULTS = 1000


class SearchControls(QWidget):
    changed = Signal()  # once the user pauses after changing any of them

    def __init__(self, k: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.k = QSpinBox()
        self.k.setRange(1, MAX_RESULTS)
        self.k.setValue(k)
        self.k.setToolTip("How many results to show")
        self.min_score = _score_box(0.0, "Only results at least this similar")
        self.max_score = _score_box(1.0, "Only results at most this similar (e.g. below 0.99 to hide copies)")
        self.text_filter = QLineEdit()
        self.text_filter.setPlaceholderText("Filter by file or folder name")
        self.text_filter.setClearButtonEnabled(True)
        self.text_filter.setMinimumWidth(120)
        self.clear_button = QToolButton()  # shown while a filter is active: filters carry over to new queries
        self.clear_button.setText("Clear filters")
        self.clear_button.setToolTip("Show every result again (similarity 0 to 1, no name filter)")
        self.clear_button.clicked.connect(self.clear)
        self.clear_button.hide()

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SETTLE_MS)
        self._timer.timeout.connect(self.changed.emit)
        self.k.valueChanged.connect(self._timer.start)
        self.min_score.valueChanged.connect(self._min_changed)
        self.max_score.valueChanged.connect(self._max_changed)
        self.text_filter.textChanged.connect(self._timer.start)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Show"))
        layout.addWidget(self.k)
        layout.addWidget(QLabel("results, similarity"))
        layout.addWidget(self.min_score)
        layout.addWidget(QLabel("to"))
        layout.addWidget(self.max_score)
        layout.addStretch(1)
        layout.addWidget(self.clear_button)
        # The name filter is placed by the window (beside the result count): one row of all of them would
        # keep the window from fitting half of a 1,280 px screen.
        for box in (self.k, self.min_score, self.max_score, self.text_filter):
            (box.textChanged if box is self.text_filter else box.valueChanged).connect(self._show_active)

    def search_filter(self) -> SearchFilter:
        low, high = self.min_score.value(), self.max_score.value()
        return SearchFilter(min_score=low if low > 0.0 else None, max_score=high if high < 1.0 else None,
                            text=self.text_filter.text().strip() or None)

    def active(self) -> bool:
        """A filter or similarity limit narrows the results."""
        f = self.search_filter()
        return f.min_score is not None or f.max_score is not None or f.text is not None

    def clear(self) -> None:
        """Drop every filter and limit (one search follows, once the values settle)."""
        self.min_score.setValue(0.0)
        self.max_score.setValue(1.0)
        self.text_filter.clear()

    def _show_active(self) -> None:
        self.clear_button.setVisible(self.active())

    def settle(self) -> None:
        """A search is starting with the current values: the pending `changed` is no longer needed."""
        self._timer.stop()

    def _min_changed(self, value: float) -> None:
        if value > self.max_score.value():
            self.max_score.setValue(value)
        self._timer.start()

    def _max_changed(self, value: float) -> None:
        if value < self.min_score.value():
            self.min_score.setValue(value)
        self._timer.start()


def _score_box(value: float, tip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(0.0, 1.0)
    box.setSingleStep(0.01)
    box.setDecimals(3)  # VGG similarities crowd near 1: two decimals cannot tell a copy from a near match
    box.setValue(value)
    box.setToolTip(tip)
    return box
