"""Recognising images by name and by content (magic bytes), for the scanner."""

from __future__ import annotations

import io

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from core.formats import IMAGE_EXTENSIONS, RAW_EXTENSIONS, sniff
from tests.corpus import gradient


def encoded(fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    Image.fromarray(gradient(64, 48)).save(out, fmt, **kwargs)
    return out.getvalue()


def test_every_format_of_a_photo_library_has_its_extension():
    for ext in (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".mpo", ".heic", ".heif",
                ".avif", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw", ".dng"):
        assert ext in IMAGE_EXTENSIONS, ext
    assert RAW_EXTENSIONS <= IMAGE_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTENSIONS)
    assert not {".mpg", ".mpeg", ".pdf", ".txt", ".xmp"} & IMAGE_EXTENSIONS  # videos, documents, sidecars


@pytest.mark.parametrize(("fmt", "expected"), [
    ("JPEG", "JPEG"), ("PNG", "PNG"), ("GIF", "GIF"), ("WEBP", "WEBP"), ("BMP", "BMP"), ("TIFF", "TIFF"),
    ("MPO", "JPEG"), ("AVIF", "AVIF"),
])
def test_files_written_by_pillow_are_sniffed(fmt, expected):
    assert sniff(encoded(fmt)[:64]) == expected


def test_heif_written_by_pillow_heif_is_sniffed():
    pillow_heif.register_heif_opener()
    assert sniff(encoded("HEIF", quality=80)[:64]) == "HEIF"


def test_big_endian_tiff_and_bigtiff():
    assert sniff(encoded("TIFF", big_tiff=True)[:16]) == "TIFF"
    assert sniff(b"MM\x00*\x00\x00\x00\x08") == "TIFF"


@pytest.mark.parametrize(("head", "expected"), [
    (b"II*\x00\x10\x00\x00\x00CR\x02\x00", "CR2"),
    (b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom", "CR3"),
    (b"FUJIFILMCCD-RAW 0201FF383501", "RAF"),
    (b"IIRO\x08\x00\x00\x00", "ORF"),
    (b"MMOR\x00\x00\x00\x08", "ORF"),
    (b"IIU\x00\x18\x00\x00\x00", "RW2"),
    (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf", "AVIF"),  # AVIF under a generic major brand
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIF"),
    (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00isommp42", None),  # an MP4 video
    (b"BM\x00\x00", None),  # too short to check the DIB header
    (b"%PDF-1.7\n", None),
    (b"", None),
])
def test_magic_bytes(head, expected):
    assert sniff(head) == expected


def test_random_bytes_are_not_an_image():
    rng = np.random.default_rng(1)
    assert all(sniff(rng.bytes(64)) is None for _ in range(200))
