"""The thumbnail cache the API and the desktop share."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
from PIL import Image, ImageCms

from core import thumbnails
from core.images import ImageError
from core.thumbnails import ThumbnailCache
from tests.dng import dng_bytes
from tests.icc import rgb_profile


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


def test_the_least_recently_shown_go_first_when_the_cache_is_full(tmp_path, photo_dir):
    cache = ThumbnailCache(tmp_path / "thumbs", 64, max_bytes=10**9)
    sources = sorted(photo_dir.glob("*.jpg"))[:3]
    paths = [cache.path(f"id{i}", 1, str(s)) for i, s in enumerate(sources)]
    for age, path in zip((300, 200, 100), paths, strict=True):  # id0 shown longest ago, id2 most recently
        os.utime(path, ns=(time.time_ns() - age * 10**9, path.stat().st_mtime_ns))
    cache.path("id0", 1, str(sources[0]))  # shown again: now the most recent
    cache.max_bytes = paths[0].stat().st_size + paths[2].stat().st_size
    assert cache.prune() == 1
    assert [p.exists() for p in paths] == [True, False, True]


def test_writing_keeps_the_cache_within_its_limit(tmp_path, photo_dir, monkeypatch):
    monkeypatch.setattr(thumbnails, "PRUNE_EVERY", 1)
    cache = ThumbnailCache(tmp_path / "thumbs", 64, max_bytes=1)  # smaller than any thumbnail
    cache.path("a", 1, str(photo_dir / "rocket.jpg"))
    newest = cache.path("b", 1, str(photo_dir / "rocket.jpg"))
    assert list((tmp_path / "thumbs").iterdir()) == [newest]  # "a" made room; the one asked for stays


def test_thumbnails_use_the_decoder_of_the_index(tmp_path):
    """HEIC and camera RAW render, colour-managed to sRGB (the cached JPEG carries no profile: sRGB)."""
    picture = np.zeros((300, 400, 3), np.uint8)
    picture[..., 0], picture[:, 200:, 2] = 200, 180
    Image.fromarray(picture).save(tmp_path / "phone.heic", "HEIF", quality=90)
    (tmp_path / "camera.dng").write_bytes(dng_bytes(picture, preview=picture))
    wide = ImageCms.profileToProfile(Image.fromarray(picture), ImageCms.createProfile("sRGB"),
                                     ImageCms.ImageCmsProfile(io.BytesIO(rgb_profile())), outputMode="RGB")
    wide.save(tmp_path / "wide.png", icc_profile=rgb_profile())
    cache = ThumbnailCache(tmp_path / "thumbs", 64)
    for name in ("phone.heic", "camera.dng", "wide.png"):
        thumb = Image.open(cache.path(name, 1, str(tmp_path / name)))
        assert thumb.size == (64, 48) and "icc_profile" not in thumb.info, name
        expected = np.asarray(Image.fromarray(picture).resize((64, 48)), dtype=np.int16)
        assert np.abs(np.asarray(thumb, dtype=np.int16) - expected).mean() < 6, name
