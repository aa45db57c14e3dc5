"""The selected result up close: the details panel (a dock beside the grid) and the quick look (Space).

The panel shows the image's tags in an editor (desktop/tags.py) and its classifier labels apart from them,
once set_engine has given it an engine and a worker to read and write them with."""

from __future__ import annotations

import re

from PySide6.QtCore import QDateTime, QLocale, Qt, Signal
from PySide6.QtGui import QGuiApplication, QImage, QKeyEvent, QPainter, QPixmap, QWheelEvent
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QFormLayout,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from core.images import ImageError, load_image
from core.store import Hit
from desktop import files
from desktop.tags import Call, TagEditor, set_known
from desktop.thumbnails import pil_to_qimage
from desktop.worker import WORKER_NICE, Worker

ZOOM_STEP = 1.25  # one wheel notch or one +/- press
DATE_FORMAT = "d MMM yyyy, HH:mm"
MAX_ZOOM = 16.0  # times the image's own pixels: enough to see single pixels, not so far that one fills the screen


def modified_text(mtime_ns: int) -> str:
    """A file's modification time (ns since the epoch), local time, with the locale's month name: "30 Nov 2026,
    03:30" reads the same everywhere (a short numeric date is ambiguous: 03/04)."""
    when = QDateTime.fromMSecsSinceEpoch(mtime_ns // 1_000_000)
    return QLocale().toString(when, DATE_FORMAT)


class DetailsPanel(QDockWidget):
    """Preview (the result's thumbnail), name, folder, file size, pixel size, modification date, similarity,
    classifier labels, and the tags (editable)."""

    tags_saved = Signal(str, list)  # image id, its tags as stored

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Details", parent)
        self.setObjectName("detailsDock")  # saveState/restoreState remember whether it is shown
        self.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.preview = QLabel()
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumHeight(170)
        self.fields = {key: QLabel() for key in ("name", "folder", "size", "dimensions", "modified", "score",
                                                 "labels")}
        form = QFormLayout()
        for key, label in zip(self.fields, ("Name", "Folder", "File size", "Dimensions", "Modified", "Similarity",
                                            "Labels"), strict=True):
            field = self.fields[key]
            field.setWordWrap(True)
            if key != "folder":  # (its break points would be copied too: Copy Path in the grid's menu copies it)
                field.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            form.addRow(label, field)
        self.tag_editor = TagEditor()
        self.tag_editor.setEnabled(False)  # until the image's tags are read
        self.tag_editor.edited.connect(self._save_tags)
        form.addRow("Tags", self.tag_editor)
        self._engine = None
        self._call: Call | None = None
        self._image_id: str | None = None
        self.empty = QLabel("Select a result to see its details.")
        self.empty.setWordWrap(True)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addWidget(self.preview)
        layout.addLayout(form)
        layout.addWidget(self.empty)
        layout.addStretch(1)
        body.setMinimumWidth(220)
        self.setWidget(body)
        self.show_hit(None, None)

    def set_engine(self, engine, call: Call | None) -> None:
        """The engine whose tags and labels the panel shows and edits, and `call` (a Worker.call) to run its
        calls off the GUI thread; None, None while no index is open (the editor is disabled)."""
        self._engine, self._call = engine, call
        self._image_id = None
        self.tag_editor.setEnabled(False)

    def show_hit(self, hit: Hit | None, thumbnail: QPixmap | None) -> None:
        """The result to describe (None: nothing selected); `thumbnail` may arrive later (show_hit again)."""
        self.empty.setVisible(hit is None)
        self.preview.setVisible(hit is not None)
        self.tag_editor.setVisible(hit is not None)
        if hit is None:
            for field in self.fields.values():
                field.clear()
            self._image_id = None
            return
        record = hit.record
        if record.id != self._image_id:
            self._read_tags(record.id)
        self.preview.setPixmap(thumbnail if thumbnail is not None else QPixmap())
        self.preview.setText("" if thumbnail is not None else "…")
        self.fields["name"].setText(record.name)
        # Break points after separators: a long path wraps in the narrow panel instead of being cut.
        self.fields["folder"].setText(re.sub(r"([/\\_])", "\\1\u200b", record.folder))
        self.fields["size"].setText(files.human_size(record.size))
        self.fields["dimensions"].setText(f"{record.width:,} × {record.height:,} px")
        self.fields["modified"].setText(modified_text(record.mtime_ns))
        self.fields["score"].setText(f"{hit.score:.3f}")
        self.setToolTip(record.path)

    def reload_tags(self) -> None:
        """Read the shown image's tags and labels again (after they were changed elsewhere: Tags…, the API)."""
        if self._image_id is not None:
            self._read_tags(self._image_id)

    def _read_tags(self, image_id: str) -> None:
        self._image_id = image_id
        self.tag_editor.set_tags([])
        self.tag_editor.setEnabled(False)
        self.fields["labels"].clear()
        if self._engine is None or self._call is None:
            return
        engine = self._engine
        self._call(lambda: (engine.annotations_of([image_id]).get(image_id), engine.tag_counts()),
                   lambda result: self._tags_read(image_id, *result),
                   lambda exc: self._tags_failed(image_id, "cannot read the tags", exc))

    def _tags_read(self, image_id: str, note, counts: dict[str, int]) -> None:
        if image_id != self._image_id:  # another result was selected meanwhile
            return
        self.tag_editor.set_tags(note.tags if note else [])
        set_known(self.tag_editor.known, counts)
        self.tag_editor.setEnabled(True)
        # "; " between labels: ImageNet class names hold commas ("tabby, tabby cat").
        self.fields["labels"].setText("; ".join(note.labels) if note and note.labels else "—")

    def _save_tags(self, tags: list[str]) -> None:
        image_id, engine = self._image_id, self._engine
        if image_id is None or engine is None or self._call is None:
            return
        self.tag_editor.setEnabled(False)
        self._call(lambda: (engine.set_tags(image_id, tags), engine.tag_counts()),
                   lambda result: self._tags_saved(image_id, *result),
                   lambda exc: self._tags_failed(image_id, "tags not saved", exc))

    def _tags_saved(self, image_id: str, stored: list[str], counts: dict[str, int]) -> None:
        self.tags_saved.emit(image_id, stored)
        if image_id == self._image_id:
            self.tag_editor.set_tags(stored)
            set_known(self.tag_editor.known, counts)
            self.tag_editor.setEnabled(True)

    def _tags_failed(self, image_id: str, what: str, exc: Exception) -> None:
        if image_id == self._image_id:
            self.tag_editor.show_error(f"{what.capitalize()}: {exc}")
            self.tag_editor.setEnabled(True)

    def set_preview(self, image: QImage, device_pixel_ratio: float) -> None:
        """A larger preview than the grid's thumbnail (core.thumbnails.THUMBNAIL_SIZE), fitted to the panel."""
        if image.isNull():
            return
        pixmap = QPixmap.fromImage(image)
        width = max(self.widget().width() - 24, 120) * device_pixel_ratio
        if pixmap.width() > width:
            pixmap = pixmap.scaledToWidth(round(width), Qt.TransformationMode.SmoothTransformation)
        pixmap.setDevicePixelRatio(device_pixel_ratio)
        self.preview.setPixmap(pixmap)
        self.preview.setText("")


class ImageView(QGraphicsView):
    """An image that zooms with the wheel or +/- (about the mouse) and pans by dragging; 0 fits it again."""

    zoomed = Signal(float)  # the scale now, 1.0 = one image pixel per screen pixel

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.item = QGraphicsPixmapItem()
        self.item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self.item)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.setBackgroundBrush(Qt.GlobalColor.black)
        self.fitted = True  # follows the window's size until the user zooms

    def set_pixmap(self, pixmap: QPixmap) -> None:
        self.item.setPixmap(pixmap)
        self.scene().setSceneRect(self.item.boundingRect())
        self.fit()

    def scale_now(self) -> float:
        return self.transform().m11()

    def fit(self) -> None:
        self.fitted = True
        self.fitInView(self.item, Qt.AspectRatioMode.KeepAspectRatio)
        if self.scale_now() > 1.0:  # a small image is shown at its own size, not blown up
            self.resetTransform()
        self.zoomed.emit(self.scale_now())

    def zoom(self, factor: float) -> None:
        factor = min(factor, MAX_ZOOM / self.scale_now())
        self.fitted = False
        self.scale(factor, factor)
        self.zoomed.emit(self.scale_now())

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120
        if steps:
            self.zoom(ZOOM_STEP ** steps)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom(ZOOM_STEP)
        elif key == Qt.Key.Key_Minus:
            self.zoom(1 / ZOOM_STEP)
        elif key == Qt.Key.Key_0:
            self.fit()
        else:
            super().keyPressEvent(event)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.fitted and not self.item.pixmap().isNull():
            self.fit()


class QuickLook(QDialog):
    """The selected result large (Space): zoom with the wheel or +/-, pan by dragging, 0 to fit, Esc or
    Space closes. The image is decoded by core.images (every format the index reads) in its own thread."""

    shown = Signal()  # the image (or why it cannot be shown) is on screen

    def __init__(self, hit: Hit, placeholder: QPixmap | None, parent: QWidget | None = None):
        super().__init__(parent)
        self.hit = hit
        self.setWindowTitle(hit.record.name)
        self.view = ImageView()
        self.caption = QLabel(f"{hit.record.path}    {hit.record.width:,} × {hit.record.height:,} px")
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 6)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.caption)
        self.view.zoomed.connect(self._show_zoom)
        screen = (parent.screen() if parent is not None else QGuiApplication.primaryScreen()).availableGeometry()
        self.resize(int(screen.width() * 0.8), int(screen.height() * 0.8))
        if placeholder is not None:
            self.view.set_pixmap(placeholder)
        # Decoded no larger than twice the screen: enough to zoom in, without holding 100 MP in memory.
        draft = (2 * screen.width(), 2 * screen.height())
        self._worker = Worker("quick look", self, nice=WORKER_NICE)
        self._worker.call(lambda: pil_to_qimage(load_image(hit.record.path, draft=draft).image),
                          self._loaded, self._failed)

    def _loaded(self, image) -> None:
        pixmap = QPixmap.fromImage(image)
        # Scene units are the full image's pixels, so 100 % means one of its pixels per screen pixel.
        pixmap.setDevicePixelRatio(max(image.width() / max(self.hit.record.width, 1), 1e-6))
        self.view.set_pixmap(pixmap)
        self.shown.emit()

    def _failed(self, exc: BaseException) -> None:
        reason = exc.reason if isinstance(exc, ImageError) else str(exc)
        self.caption.setText(f"{self.hit.record.path}: cannot be shown ({reason})")
        self.shown.emit()

    def _show_zoom(self, scale: float) -> None:
        record = self.hit.record
        self.caption.setText(f"{record.path}    {record.width:,} × {record.height:,} px    {scale:.0%}")

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space:
            self.close()
        else:
            super().keyPressEvent(event)

    def done(self, result: int) -> None:
        self._worker.stop()
        super().done(result)
