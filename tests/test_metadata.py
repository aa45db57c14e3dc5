"""core.metadata on generated JPEG and HEIC files carrying real EXIF written by Pillow."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pillow_heif
import pytest
from PIL import Image

from core.metadata import camera_name, read_metadata

pillow_heif.register_heif_opener()


def write_photo(path, fmt="JPEG", size=(64, 48), *, taken=None, offset=None, make=None, model=None, lens=None,
                orientation=None):
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    if orientation:
        exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    if taken:
        sub[0x9003] = taken
    if offset:
        sub[0x9011] = offset
    if lens:
        sub[0xA434] = lens
    Image.new("RGB", size, (120, 80, 40)).save(path, fmt, exif=exif.tobytes())
    return path


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("HEIF", ".heic")])
def test_exif_date_camera_lens(tmp_path, fmt, suffix):
    path = write_photo(tmp_path / f"a{suffix}", fmt, taken="2023:07:14 18:30:05", offset="+02:00", make="Canon",
                       model="Canon EOS R5", lens="RF24-105mm F4 L IS USM")
    meta = read_metadata(path)
    assert meta.taken == datetime(2023, 7, 14, 18, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    assert meta.taken_source == "exif"
    assert meta.taken_iso() == "2023-07-14T18:30:05+02:00"
    assert meta.taken_local() == "2023-07-14T18:30:05"
    assert meta.camera == "Canon EOS R5"
    assert meta.lens == "RF24-105mm F4 L IS USM"
    assert (meta.width, meta.height) == (64, 48)


def test_naive_local_time_without_offset_and_orientation_swaps_size(tmp_path):
    path = write_photo(tmp_path / "b.jpg", taken="2021:01:02 03:04:05", make="FUJIFILM", model="X-T4",
                       orientation=6)
    meta = read_metadata(path)
    assert meta.taken == datetime(2021, 1, 2, 3, 4, 5) and meta.taken.tzinfo is None
    assert meta.camera == "FUJIFILM X-T4"
    assert (meta.width, meta.height) == (48, 64)


def test_falls_back_to_mtime(tmp_path):
    path = write_photo(tmp_path / "c.jpg")
    os.utime(path, (1_600_000_000, 1_600_000_000))
    meta = read_metadata(path)
    assert meta.taken_source == "mtime"
    assert meta.taken == datetime.fromtimestamp(1_600_000_000)
    assert meta.camera is None and meta.lens is None


@pytest.mark.parametrize("content", [
    b"", b"not an image at all", b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00II*\x00\xff\xff"])
def test_bad_files_never_raise(tmp_path, content):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    meta = read_metadata(path)
    assert meta.taken_source == "mtime" and meta.taken is not None


def test_bad_exif_date_falls_back(tmp_path):
    path = write_photo(tmp_path / "d.jpg", taken="0000:00:00 00:00:00", offset="garbage", make="Sony")
    meta = read_metadata(path)
    assert meta.taken_source == "mtime" and meta.camera == "Sony"


def test_missing_file(tmp_path):
    meta = read_metadata(tmp_path / "gone.jpg")
    assert meta.taken is None and meta.taken_source == "mtime"


@pytest.mark.parametrize("make,model,expected", [
    ("Canon", "Canon EOS R5", "Canon EOS R5"),
    ("NIKON CORPORATION", "NIKON D750", "NIKON D750"),
    ("Apple", "iPhone 12", "Apple iPhone 12"),
    (None, "X100V", "X100V"),
    ("Leica", None, "Leica"),
    (None, None, None),
])
def test_camera_name(make, model, expected):
    assert camera_name(make, model) == expected
