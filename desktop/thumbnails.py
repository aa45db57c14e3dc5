"""Thumbnails decoded off the GUI thread (a QThreadPool) and cached on disk, keyed by image id + mtime."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, Qt, QThreadPool, Signal
from PySide6.QtGui import QImage

from core.images import ImageError, LoadedImage, load_image
from core.store import ImageRecord
from core.thumbnails import THUMBNAIL_SIZE, ThumbnailCache, default_cache, record_version
from core.thumbnails import thumbnail_key as core_thumbnail_key

log = logging.getLogger(__name__)

DECODE_THREADS = 2  # the machine's other cores index and search


def thumbnail_key(record: ImageRecord) -> str:
    """The key of a record's thumbnail: its id and the version of its file as indexed."""
    return core_thumbnail_key(record.id, record_version(record))


def decode_thumbnail(source: str | bytes, size: int) -> QImage:
    """An RGB QImage no larger than size x size of a file or buffer; ImageError if it is not an image."""
    return shrink(load_image(source, draft=(size, size)), size)  # JPEGs decode at a reduced scale: much faster


def shrink(loaded: LoadedImage, size: int) -> QImage:
    image = loaded.image
    image.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return pil_to_qimage(image)


def pil_to_qimage(image: Image.Image) -> QImage:
    rgb = image.convert("RGB")
    data = rgb.tobytes()
    qimage = QImage(data, rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888)
    return qimage.copy()  # own the pixels: `data` goes away with this frame


class ThumbnailLoader(QObject):
    """Decodes thumbnails in a thread pool, newest request first (what is on screen now), and caches them.

    `loaded` is emitted in the GUI thread (queued) with the request's key and a QImage scaled to fit
    `size` device pixels, or a null QImage when the file cannot be decoded."""

    loaded = Signal(str, QImage)

    def __init__(self, size: int, cache_dir: Path | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.size = size
        self.cache = ThumbnailCache(cache_dir, THUMBNAIL_SIZE) if cache_dir is not None else default_cache()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(DECODE_THREADS)
        self._lock = threading.Lock()
        self._pending: dict[str, ImageRecord] = {}  # key -> record; insertion order = request order
        self._closed = False

    def request(self, record: ImageRecord) -> None:
        """Ask for `record`'s thumbnail; `loaded` answers with thumbnail_key(record)."""
        key = thumbnail_key(record)
        with self._lock:
            queued = self._pending.pop(key, None) is not None
            self._pending[key] = record  # (re)inserted as the newest
        if not queued:
            self._pool.start(self._work)

    def clear(self) -> None:
        """Forget requests not started yet (a new result list replaces the old one)."""
        with self._lock:
            self._pending.clear()

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            self._pending.clear()
        self._pool.waitForDone()

    def _work(self) -> None:
        with self._lock:
            if self._closed or not self._pending:
                return
            key, record = self._pending.popitem()  # newest first
        try:
            image = self._thumbnail(record)
        except ImageError:
            image = QImage()
        except Exception:  # a thumbnail must never take the app down
            log.exception("thumbnail of %s", record.path)
            image = QImage()
        if not self._closed:
            self.loaded.emit(key, image)

    def _thumbnail(self, record: ImageRecord) -> QImage:
        try:
            image = QImage(str(self.cache.path(record.id, record_version(record), record.path)))
        except OSError as exc:  # the disk cache is optional: decode in memory instead
            log.debug("thumbnail cache %s: %s", self.cache.folder, exc)
            image = decode_thumbnail(record.path, THUMBNAIL_SIZE)
        if max(image.width(), image.height()) > self.size:
            image = image.scaled(self.size, self.size, Qt.AspectRatioMode.KeepAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
        return image
