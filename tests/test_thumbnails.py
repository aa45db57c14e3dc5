"""The thumbnail cache the API and the desktop share."""

from __future__ import annotations

import pytest
from PIL import Image

from core.images import ImageError
from core.thumbnails import ThumbnailCache


def test_renders_once_per_file_version_and_drops_old_versions(tmp_path, photo_dir):
    cache = ThumbnailCache(tmp_path / "thumbs", 64)
    source = str(photo_dir / "rocket.jpg")
    first = cache.path("abc", 1, source)
    assert max(Image.open(first).size) == 64 and Image.open(first).format == "JPEG"
    made = first.stat().st_mtime_ns
    assert cache.path("abc", 1, source) == first and first.stat().st_mtime_ns == made
    second = cache.path("abc", 2, source)
    assert second != first and not first.exists()
    assert [p.name for p in (tmp_path / "thumbs").iterdir()] == [second.name]  # no partial files left


def test_an_undecodable_file_is_an_image_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    with pytest.raises(ImageError):
        ThumbnailCache(tmp_path / "thumbs", 64).path("x", 1, str(bad))
