"""Thumbnails decoded off the GUI thread (a QThreadPool) and cached on disk, keyed by image id + mtime."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import platformdirs
from PIL import Image
from PySide6.QtCore import QObject, Qt, QThreadPool, Signal
from PySide6.QtGui import QImage

from core.config import APP_NAME
from core.images import ImageError, LoadedImage, load_image
from core.store import ImageRecord

log = logging.getLogger(__name__)

CACHE_SIZE = 320  # longest side of the cached JPEGs: sharp in 160 px cells on 2x screens
DECODE_THREADS = 2  # the machine's other cores index and search


def default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)) / "thumbnails"


def thumbnail_key(record: ImageRecord) -> str:
    """Changes when the file does, so an edited image never shows a stale thumbnail."""
    return f"{record.id}-{record.mtime_ns}"


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
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(DECODE_THREADS)
        self._lock = threading.Lock()
        self._pending: dict[str, str] = {}  # key -> path; insertion order = request order
        self._closed = False

    def request(self, key: str, path: str) -> None:
        with self._lock:
            queued = self._pending.pop(key, None) is not None
            self._pending[key] = path  # (re)inserted as the newest
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
            key, path = self._pending.popitem()  # newest first
        try:
            image = self._thumbnail(key, path)
        except ImageError:
            image = QImage()
        except Exception:  # a thumbnail must never take the app down
            log.exception("thumbnail of %s", path)
            image = QImage()
        if not self._closed:
            self.loaded.emit(key, image)

    def _thumbnail(self, key: str, path: str) -> QImage:
        cached = self.cache_dir / f"{key}.jpg"
        image = QImage(str(cached)) if cached.is_file() else QImage()
        if image.isNull():
            image = decode_thumbnail(path, CACHE_SIZE)
            self._store(cached, image)
        if max(image.width(), image.height()) > self.size:
            image = image.scaled(self.size, self.size, Qt.AspectRatioMode.KeepAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
        return image

    def _store(self, cached: Path, image: QImage) -> None:
        """Write atomically (a crash never leaves half a JPEG); the cache is optional, so errors are ignored."""
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_name(f".{cached.name}.{threading.get_ident()}.tmp")
            if image.save(str(partial), "JPG", 85):
                os.replace(partial, cached)
        except OSError as exc:
            log.debug("thumbnail cache %s: %s", cached, exc)
