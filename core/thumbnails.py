"""JPEG thumbnails of indexed images, cached on disk per file version (used by the API and the desktop).

Rendered by the index's own decoder (core.images): every format it reads (HEIC, camera RAW, ...), colour-managed
to sRGB, so the JPEGs are saved without a profile (sRGB is what viewers assume then).

The cache is bounded: past `max_bytes`, the least recently shown thumbnails are deleted. "Shown" is the
file's access time, set explicitly on every hit (mount options like noatime would not keep it).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

from core.images import load_image


def thumbnail_key(image_id: str, mtime_ns: int) -> str:
    """Changes when the file does, so an edited image never shows a stale thumbnail."""
    return f"{image_id}-{mtime_ns}"


DEFAULT_MAX_BYTES = 512 * 2**20  # about 30k thumbnails of 320 px
PRUNE_EVERY = 256  # thumbnails written between two checks of the cache's size


class ThumbnailCache:
    """Thumbnails no larger than `size` x `size` in `folder`, named `<id>-<mtime>-<size>.jpg`."""

    def __init__(self, folder: Path, size: int, max_bytes: int = DEFAULT_MAX_BYTES):
        self.folder = folder
        self.size = size
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._writes_until_check = 1  # the first write checks: the cache may have outgrown a new limit

    def path(self, image_id: str, mtime_ns: int, source: str) -> Path:
        """The cached JPEG of this version of the file, rendered first if needed.

        Raises ImageError when the file cannot be decoded and OSError when the cache cannot be written."""
        target = self.folder / f"{thumbnail_key(image_id, mtime_ns)}-{self.size}.jpg"
        try:
            made = target.stat().st_mtime_ns
        except OSError:
            pass
        else:
            _mark_used(target, made)
            return target
        with self._lock:  # before writing, so that the thumbnail asked for is never the one pruned
            self._writes_until_check -= 1
            check = self._writes_until_check <= 0
            if check:
                self._writes_until_check = PRUNE_EVERY
        if check:
            self.prune()
        image = load_image(source, draft=(self.size, self.size)).image  # decoded reduced early (JPEG, RAW, ...)
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

    def prune(self) -> int:
        """Delete the least recently shown thumbnails until the cache fits `max_bytes`; returns how many."""
        entries = []
        for path in self.folder.glob("*.jpg"):
            try:
                st = path.stat()
            except OSError:  # deleted meanwhile
                continue
            entries.append((st.st_atime_ns, st.st_size, path))
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, path in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            removed += 1
        return removed


def _mark_used(path: Path, mtime_ns: int) -> None:
    with contextlib.suppress(OSError):  # a read-only cache still serves
        os.utime(path, ns=(time.time_ns(), mtime_ns))
