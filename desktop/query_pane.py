"""The query pane: takes an image by drop, Open… or Paste, and shows the current query image."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import (
    QDragEnterEvent,
    QDragLeaveEvent,
    QDragMoveEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QPixmap,
    QResizeEvent,
)
from PySide6.QtWidgets import QFileDialog, QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from core.formats import IMAGE_EXTENSIONS
from desktop.query import Query, Source, from_path, source_from_mime

DROP_HINT = "Drop an image here\n\nan image file, a picture from\na web page, or an image URL"


class ElidedLabel(QLabel):
    """One line, elided in the middle (the end of a file name tells copies apart); a long text never sets the
    pane's, and so the window's, minimum width (issue 14). `text()` is the whole text."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._full = ""
        self.setMinimumWidth(1)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def setText(self, text: str) -> None:
        self._full = text
        self._elide()

    def text(self) -> str:
        return self._full

    def clear(self) -> None:
        self.setText("")

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(self.contentsRect().width(), 1)
        super().setText(self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideMiddle, width))


class QueryPane(QFrame):
    source_chosen = Signal(object)  # Source

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("queryPane")
        self.setAcceptDrops(True)
        self._image: QImage | None = None

        title = QLabel("Query image")
        title.setObjectName("paneTitle")
        self.preview = QLabel(DROP_HINT)
        self.preview.setObjectName("dropArea")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setWordWrap(True)
        self.preview.setMinimumSize(150, 150)  # the window fits half of a 1,280 px screen
        self.preview.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.caption = ElidedLabel()
        self.caption.setObjectName("caption")
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details = QLabel()
        self.details.setObjectName("note")
        self.details.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message = QLabel()
        self.message.setObjectName("message")
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.hide()

        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("Open an image file (Ctrl+O)")
        self.open_button.clicked.connect(self.open_file)
        self.paste_button = QPushButton("Paste")
        self.paste_button.setToolTip("Search with the image, file or URL on the clipboard (Ctrl+V)")
        self.paste_button.clicked.connect(self.paste)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.paste_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 12, 14, 14)
        layout.setSpacing(8)
        layout.addWidget(title)
        layout.addWidget(self.preview, 1)
        layout.addWidget(self.caption)
        layout.addWidget(self.details)
        layout.addWidget(self.message)
        layout.addLayout(buttons)

    # -- what it shows ----------------------------------------------------------------------------
    def show_loading(self, label: str) -> None:
        self._set_image(None)
        self.preview.setText("Loading…")
        self.caption.setText(label)
        self.details.clear()
        self.message.hide()

    def show_query(self, query: Query) -> None:
        self._set_image(query.preview)
        if query.preview is None:
            self.preview.setText("")
        self.caption.setText(query.label)
        self.caption.setToolTip(query.path or "")
        self.details.setText(query.details)
        self.message.hide()

    def show_error(self, text: str) -> None:
        """A problem with the query (not an image, download failed...): said here, where the user looks."""
        self.message.setText(text)
        self.message.show()
        if self._image is None:
            self.preview.setText(DROP_HINT)
            self.caption.clear()
            self.details.clear()

    def clear(self) -> None:
        self._set_image(None)
        self.preview.setText(DROP_HINT)
        self.caption.clear()
        self.details.clear()
        self.message.hide()

    def _set_image(self, image: QImage | None) -> None:
        if image is None:
            self.preview.setPixmap(QPixmap())  # clears the old image; callers set the text to show instead
        self._image = image
        self._set_state("filled", image is not None)
        self._rescale()

    def _rescale(self) -> None:
        if self._image is None or self._image.isNull():
            return  # setPixmap would wipe the hint text the preview shows while empty (issue 14)
        ratio = self.devicePixelRatioF()
        size = self.preview.contentsRect().size() * ratio
        scaled = self._image.scaled(size, Qt.AspectRatioMode.KeepAspectRatio,
                                    Qt.TransformationMode.SmoothTransformation)
        pixmap = QPixmap.fromImage(scaled)
        pixmap.setDevicePixelRatio(ratio)
        self.preview.setPixmap(pixmap)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._rescale()

    # -- how a query arrives ----------------------------------------------------------------------
    def open_file(self) -> None:
        patterns = " ".join(f"*{s}" for s in sorted(IMAGE_EXTENSIONS))
        path, _ = QFileDialog.getOpenFileName(self, "Search with an image", "",
                                              f"Images ({patterns});;All files (*)",
                                              options=QFileDialog.Option.HideNameFilterDetails)
        if path:
            self.source_chosen.emit(from_path(path))

    def paste(self) -> None:
        if not self.take(QGuiApplication.clipboard().mimeData()):
            self.show_error("The clipboard holds no image, image file or image URL.")

    def take(self, mime: QMimeData | None) -> bool:
        """Start a query from dropped or pasted data; False if it holds nothing that could be an image."""
        source: Source | None = source_from_mime(mime) if mime is not None else None
        if source is None:
            return False
        self.source_chosen.emit(source)
        return True

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        # Plain text that is no path or URL is refused here: the cursor shows it cannot be dropped.
        if source_from_mime(event.mimeData()) is not None:
            event.acceptProposedAction()
            self._set_dragging(True)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        event.acceptProposedAction()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self._set_dragging(False)

    def dropEvent(self, event: QDropEvent) -> None:
        # Only what dragEnterEvent accepted gets here; whether it decodes is found out in the worker.
        self._set_dragging(False)
        if self.take(event.mimeData()):
            event.acceptProposedAction()

    def _set_dragging(self, on: bool) -> None:
        # The style sheet highlights the drop area while something that could be a query hovers over it.
        self._set_state("dragging", on)

    def _set_state(self, name: str, on: bool) -> None:
        """A dynamic property the style sheet selects on; re-polishing applies the change."""
        self.preview.setProperty(name, on)
        self.preview.style().unpolish(self.preview)
        self.preview.style().polish(self.preview)
