"""How one result is drawn in the grid: thumbnail in a square, a score badge over it, name and folder below."""

from __future__ import annotations

import os

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPoint, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from core.store import Hit

HIT_ROLE = Qt.ItemDataRole.UserRole + 1
UNREADABLE_ROLE = Qt.ItemDataRole.UserRole + 2  # True once the thumbnail failed to decode
QUERY_ROLE = Qt.ItemDataRole.UserRole + 3  # True for the query's own file
THUMB = 160  # logical pixels of the square a thumbnail is fitted into
CELL = QSize(THUMB + 20, THUMB + 56)

AnyIndex = QModelIndex | QPersistentModelIndex


class ResultDelegate(QStyledItemDelegate):
    """Draws one result: the thumbnail in a square, a score badge over it, the file name and folder below."""

    def sizeHint(self, option: QStyleOptionViewItem, index: AnyIndex) -> QSize:
        return CELL

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: AnyIndex) -> None:
        hit: Hit | None = index.data(HIT_ROLE)
        if hit is None:
            return
        palette = option.palette
        cell = option.rect.adjusted(3, 3, -3, -3)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected or option.state & QStyle.StateFlag.State_MouseOver:
            highlight = QColor(palette.highlight().color())
            highlight.setAlpha(60 if selected else 22)
            painter.setPen(palette.highlight().color() if selected else Qt.PenStyle.NoPen)
            painter.setBrush(highlight)
            painter.drawRoundedRect(cell, 8, 8)

        square = QRect(cell.x() + (cell.width() - THUMB) // 2, cell.y() + 7, THUMB, THUMB)
        pixmap: QPixmap | None = index.data(Qt.ItemDataRole.DecorationRole)
        target = square
        if pixmap is not None:
            target = QRect(QPoint(0, 0), pixmap.deviceIndependentSize().toSize())
            target.moveCenter(square.center())
            clip = QPainterPath()
            clip.addRoundedRect(target, 4, 4)
            painter.setClipPath(clip)
            painter.drawPixmap(target, pixmap)
            painter.setClipping(False)
        else:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(palette.alternateBase())
            painter.drawRoundedRect(square, 4, 4)
            if index.data(UNREADABLE_ROLE):
                painter.setPen(palette.placeholderText().color())
                painter.drawText(square, Qt.AlignmentFlag.AlignCenter, "cannot read\nthis file")

        self._badge(painter, target, hit.score)  # on the image's corner, wherever its shape puts it
        if index.data(QUERY_ROLE):
            self._badge(painter, target.translated(target.width() - 70, 0), None)

        font = QFont(option.font)
        text = QRect(cell.x() + 6, square.bottom() + 6, cell.width() - 12, option.fontMetrics.height())
        painter.setFont(font)
        painter.setPen(palette.text().color())
        painter.drawText(text, Qt.AlignmentFlag.AlignHCenter,
                         option.fontMetrics.elidedText(hit.record.name, Qt.TextElideMode.ElideMiddle, text.width()))
        font.setPointSizeF(font.pointSizeF() * 0.85)
        painter.setFont(font)
        painter.setPen(palette.placeholderText().color())
        folder = os.path.basename(hit.record.folder) or hit.record.folder
        below = text.translated(0, text.height() + 1)
        painter.drawText(below, Qt.AlignmentFlag.AlignHCenter,
                         painter.fontMetrics().elidedText(folder, Qt.TextElideMode.ElideMiddle, below.width()))
        painter.restore()

    @staticmethod
    def _badge(painter: QPainter, image: QRect, score: float | None) -> None:
        """The score, or (score None) "query" on the query's own image."""
        font = painter.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 0.85)
        painter.setFont(font)
        label = "query" if score is None else f"{score:.2f}"
        width = painter.fontMetrics().horizontalAdvance(label) + 12
        badge = QRect(image.x() + 5, image.y() + 5, width, painter.fontMetrics().height() + 4)
        # Green for close matches fading to slate grey for distant ones: the eye finds the good ones first.
        t = max(0.0, min(1.0, ((1.0 if score is None else score) - 0.5) / 0.5))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(40, 90, 170, 230) if score is None
                         else QColor(int(90 - 60 * t), int(100 + 50 * t), int(110 - 40 * t), 220))
        painter.drawRoundedRect(badge, badge.height() / 2, badge.height() / 2)
        painter.setPen(QColor("white"))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, label)
