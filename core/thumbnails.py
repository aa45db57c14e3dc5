"""JPEG thumbnails of indexed images, cached on disk per file version (used by the API and the desktop)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image

from core.images import load_image


def thumbnail_key(image_id: str, mtime_ns: int) -> str:
    """Changes when the file does, so an edited image never shows a stale thumbnail."""
    return f"{image_id}-{mtime_ns}"


class ThumbnailCache:
    """Thumbnails no larger than `size` x `size` in `folder`, named `<id>-<mtime>-<size>.jpg`."""

    def __init__(self, folder: Path, size: int):
        self.folder = folder
        self.size = size

    def path(self, image_id: str, mtime_ns: int, source: str) -> Path:
        """The cached JPEG of this version of the file, rendered first if needed.

        Raises ImageError when the file cannot be decoded and OSError when the cache cannot be written."""
        target = self.folder / f"{thumbnail_key(image_id, mtime_ns)}-{self.size}.jpg"
        if target.is_file():
            return target
        image = load_image(source, draft=(self.size, self.size)).image  # JPEGs decode at a reduced scale
        image.thumbnail((self.size, self.size), Image.Resampling.LANCZOS)
        self.folder.mkdir(parents=True, exist_ok=True)
        # Write then rename: a concurrent reader never sees half a file, a crash never leaves one.
        fd, partial = tempfile.mkstemp(dir=self.folder, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                image.save(out, "JPEG", quality=85, optimize=True)
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        for old in self.folder.glob(f"{image_id}-*-{self.size}.jpg"):  # earlier versions of the file
            if old != target:
                old.unlink(missing_ok=True)
        return target
