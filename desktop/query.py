"""Query images: where they come from (file, URL, raw data), and one step of the query chain."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMimeData, QUrl
from PySide6.QtGui import QImage

from core.images import ImageError, load_image, read_bytes
from core.model import INPUT_SIZE, to_model_pixels
from core.store import ImageRecord
from desktop.files import human_size
from desktop.thumbnails import shrink
from desktop.worker import warm_up

if TYPE_CHECKING:
    from core.engine import Engine

FETCH_TIMEOUT_S = 15.0
PREVIEW_SIZE = 512
# Raw image formats a drag or the clipboard may carry, best first (browsers offer several at once).
IMAGE_MIME_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff")


@dataclass(frozen=True)
class Source:
    """Where a query image comes from: exactly one of path, url, data or image."""

    label: str
    path: str | None = None
    url: str | None = None
    data: bytes | None = None
    image: QImage | None = None  # already decoded (the clipboard's image)


@dataclass(frozen=True)
class LoadedSource:
    label: str
    data: bytes
    preview: QImage
    path: str | None
    details: str  # size in pixels and bytes, for the query pane
    vector: np.ndarray | None = None  # (dims,) float32 unit descriptor, when an engine was given


@dataclass(frozen=True, eq=False)  # compared by identity: a history may hold the same image twice
class Query:
    """One step of the query chain: an outside image (by its descriptor) or an indexed one (by id)."""

    label: str
    preview: QImage | None = None
    vector: np.ndarray | None = None
    ref_id: str | None = None
    path: str | None = None
    details: str = ""


def source_from_mime(mime: QMimeData) -> Source | None:
    """The query a drop or the clipboard carries, or None when it holds nothing usable.

    A local file wins (file managers); then image bytes (browsers send them with the image's URL, and
    using them saves a download); then a web URL; then text that is a URL or a path."""
    urls = mime.urls() if mime.hasUrls() else []
    local = [u for u in urls if u.isLocalFile()]
    if local:
        return from_path(local[0].toLocalFile())
    for fmt in IMAGE_MIME_TYPES:
        if mime.hasFormat(fmt) and (data := bytes(mime.data(fmt).data())):
            return Source(label=_url_name(urls[0]) if urls else "dropped image", data=data)
    if mime.hasImage():
        image = QImage(mime.imageData())
        if not image.isNull():
            return Source(label="pasted image", image=image)
    web = [u for u in urls if u.scheme() in ("http", "https")]
    if web:
        return Source(label=_url_name(web[0]), url=web[0].toString())
    if mime.hasText():
        return source_from_text(mime.text())
    return None


def source_from_text(text: str) -> Source | None:
    text = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not text:
        return None
    url = QUrl(text)
    if url.scheme() in ("http", "https"):
        return Source(label=_url_name(url), url=url.toString())
    if url.isLocalFile():
        return from_path(url.toLocalFile())
    path = os.path.expanduser(text)
    return from_path(path) if os.path.isabs(path) and os.path.exists(path) else None


def from_path(path: str) -> Source:
    return Source(label=os.path.basename(path) or path, path=path)


def _url_name(url: QUrl) -> str:
    return url.fileName() or url.host() or url.toString()


def load_source(source: Source, max_bytes: int, engine: Engine | None = None) -> LoadedSource:
    """Read (or download) the query's bytes, decode them once, make the preview and, given an `engine`, the
    descriptor: one call in the search worker. ImageError for anything that is not a usable image.

    The decode uses the indexer's draft size (INPUT_SIZE), so a query that is an indexed file gets exactly
    its stored descriptor (similarity 1.0); the preview is made from the same pixels (a JPEG then decodes
    at no less than 224 px a side, enough for the pane)."""
    if source.path is not None:
        data = read_bytes(source.path)
    elif source.url is not None:
        data = fetch(source.url, max_bytes)
    elif source.image is not None:
        data = png_bytes(source.image)
    else:
        data = source.data or b""
    if len(data) > max_bytes:
        raise ImageError(f"larger than {max_bytes // 2**20} MB")
    loaded = load_image(data, draft=INPUT_SIZE if engine is not None else (PREVIEW_SIZE, PREVIEW_SIZE))
    vector = None
    if engine is not None:
        # TODO(lead): Engine.embed_image(PIL image) in core would save this copy of Engine.embed's last line.
        vector = warm_up(engine).embed(to_model_pixels(loaded.image)[None])[0]
    return LoadedSource(source.label, data, shrink(loaded, PREVIEW_SIZE), source.path,
                        describe(loaded.width, loaded.height, len(data)), vector)


def describe(width: int, height: int, size: int) -> str:
    return f"{width} × {height} px · {human_size(size)}"


def record_query(record: ImageRecord, preview: QImage | None) -> Query:
    """A refinement: the indexed image, searched by its stored vector."""
    return Query(record.name, preview, ref_id=record.id, path=record.path,
                 details=describe(record.width, record.height, record.size))


def fetch(url: str, max_bytes: int, timeout: float = FETCH_TIMEOUT_S) -> bytes:
    """Download an image URL with a timeout, refusing more than `max_bytes` (read one past to know)."""
    request = urllib.request.Request(url, headers={"User-Agent": "image-search", "Accept": "image/*"})
    try:
        # Only http(s) URLs get here (source_from_mime/source_from_text), never file: or ftp:.
        with urllib.request.urlopen(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise ImageError(f"the download is larger than {max_bytes // 2**20} MB")
            data = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise ImageError(f"download failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ImageError(f"download failed: {reason}") from None
    if len(data) > max_bytes:
        raise ImageError(f"the download is larger than {max_bytes // 2**20} MB")
    return data


def png_bytes(image: QImage) -> bytes:
    """PNG bytes of a decoded image (QImage is safe to use outside the GUI thread)."""
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise ImageError("the pasted image could not be encoded")
    return bytes(QByteArray(buffer.data()).data())
