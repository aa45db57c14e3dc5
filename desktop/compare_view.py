"""Two duplicates side by side with linked zoom and pan: a pair of QGraphicsViews that share one transform
and one scroll position, each captioned with its file's size, dimensions, date and path.

Images are decoded in Qt's global thread pool (core.images through desktop.thumbnails, so HEIC and raw
files work too), at most COMPARE_SIZE pixels on the longest side to bound memory, and shown at the same width.
"""

from __future__ import annotations

import time

import shiboken6
from PySide6.QtCore import QObject, Qt, QThreadPool, Signal
from PySide6.QtGui import QImage, QPainter, QPixmap, QTransform
from PySide6.QtWidgets import (
    QDialog,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.images import ImageError
from core.store import ImageRecord
from desktop import files
from desktop.thumbnails import decode_thumbnail

COMPARE_SIZE = 4096  # longest side decoded, px: full detail for most photos, bounded memory for huge ones
ZOOM_STEP = 1.25


def caption(record: ImageRecord) -> str:
    """Size, dimensions, modification date and path, one per line."""
    date = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.mtime_ns / 1e9))
    return (f"{files.human_size(record.size)} · {record.width} × {record.height} px · {date}\n"
            f"{record.path}")


class _Decoded(QObject):
    done = Signal(int, QImage)  # side, image (null when it cannot be decoded)


class CompareView(QDialog):
    """Side-by-side compare; `zoom_by`, the wheel (Ctrl: zoom) and the buttons act on both views at once."""

    def __init__(self, left: ImageRecord, right: ImageRecord, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Compare")
        self.resize(1100, 700)
        self.records = (left, right)
        self.views = (_View(self), _View(self))
        self._items = (QGraphicsPixmapItem(), QGraphicsPixmapItem())
        self._linking = False
        grid = QGridLayout()
        for side, (view, item, record) in enumerate(zip(self.views, self._items, self.records, strict=True)):
            view.scene().addItem(item)
            label = QLabel(caption(record))
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setWordWrap(True)
            grid.addWidget(view, 0, side)
            grid.addWidget(label, 1, side)
            for bar, other in ((view.horizontalScrollBar(), "horizontalScrollBar"),
                               (view.verticalScrollBar(), "verticalScrollBar")):
                bar.valueChanged.connect(lambda value, s=side, o=other: self._pan(s, o, value))
        buttons = QHBoxLayout()
        for text, slot in (("Zoom In", lambda: self.zoom_by(ZOOM_STEP)),
                           ("Zoom Out", lambda: self.zoom_by(1 / ZOOM_STEP)),
                           ("Fit", self.fit), ("Actual Size", lambda: self.set_zoom(1.0))):
            button = QPushButton(text)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(grid, 1)
        layout.addLayout(buttons)
        self._decoded = _Decoded(self)
        self._decoded.done.connect(self._show)
        for side, record in enumerate(self.records):
            QThreadPool.globalInstance().start(lambda s=side, r=record: self._decode(s, r))

    def zoom(self) -> float:
        return self.views[0].transform().m11()

    def set_zoom(self, scale: float) -> None:
        for view in self.views:
            view.setTransform(QTransform.fromScale(scale, scale))

    def zoom_by(self, factor: float) -> None:
        self.set_zoom(self.zoom() * factor)

    def fit(self) -> None:
        """The zoom that shows the larger image whole in its view, on both views."""
        view = self.views[0]
        rects = [item.sceneBoundingRect() for item in self._items if not item.pixmap().isNull()]
        if rects:
            width, height = max(r.width() for r in rects), max(r.height() for r in rects)
            port = view.viewport().size()
            self.set_zoom(min(port.width() / max(width, 1), port.height() / max(height, 1)))

    def loaded(self) -> bool:
        return all(not item.pixmap().isNull() for item in self._items)

    def _decode(self, side: int, record: ImageRecord) -> None:  # in the pool
        try:
            image = decode_thumbnail(record.path, COMPARE_SIZE)
        except (ImageError, OSError):
            image = QImage()
        if shiboken6.isValid(self._decoded):
            self._decoded.done.emit(side, image)

    def _show(self, side: int, image: QImage) -> None:
        item = self._items[side]
        pixmap = QPixmap.fromImage(image)
        item.setPixmap(pixmap)
        # Both images are shown at the larger one's width, so a resized copy lines up with its original and the
        # linked scroll position points at the same detail in both (the captions give the true dimensions).
        width = max(r.width for r in self.records) or pixmap.width()
        if not pixmap.isNull() and pixmap.width() != width:
            item.setScale(width / pixmap.width())
        self.views[side].scene().setSceneRect(item.sceneBoundingRect())
        if self.loaded():
            self.fit()

    def _pan(self, side: int, bar: str, value: int) -> None:
        if self._linking:
            return
        self._linking = True
        try:
            getattr(self.views[1 - side], bar)().setValue(value)
        finally:
            self._linking = False


class _View(QGraphicsView):
    def __init__(self, compare: CompareView):
        super().__init__(QGraphicsScene(compare))
        self._compare = compare
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)

    def wheelEvent(self, event) -> None:
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self._compare.zoom_by(ZOOM_STEP if event.angleDelta().y() > 0 else 1 / ZOOM_STEP)
        else:
            super().wheelEvent(event)
