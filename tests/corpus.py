"""A corpus of awkward and broken image files: what users' folders really hold."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image

from tests.dng import dng_bytes
from tests.icc import rgb_profile

# name -> True if it must be indexed, False if it must be skipped with a reason
EXPECTED = {
    "empty.jpg": False,
    "truncated.jpg": False,
    "text-as-jpg.jpg": False,
    "random-bytes.png": False,
    "bomb.png": False,
    "cmyk.jpg": True,
    "rgba.png": True,
    "palette.gif": True,
    "palette-transparent.png": True,
    "animated.gif": True,
    "gray16.png": True,
    "exif-rotated.jpg": True,
    "one-pixel.png": True,
    "wide-4000x10.png": True,
    "ünïcode ñame 写真.jpg": True,
    "new\nline.jpg": True,
    "photo.webp": True,
    "photo.bmp": True,
    "photo.tiff": True,
    "png-named.jpg": True,
    "sub/deeper/nested.jpg": True,
    # what a photographer's library holds (issue 12)
    "no-eoi.jpg": True,  # whole but for its end marker: viewers show it
    "damaged-metadata.png": True,  # a text chunk with a bad checksum, pixels intact
    "truncated.png": False,  # really cut short (40 %)
    "texture.dds": False,  # a pixel format Pillow does not implement: NotImplementedError
    "phone.heic": True,
    "photo.avif": True,
    "stereo.mpo": True,
    "camera.dng": True,
    "wide-gamut.jpg": True,  # an embedded ProPhoto ICC profile
}


def gradient(width: int = 96, height: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1).astype(np.uint8)


def jpeg_bytes(pixels: np.ndarray, **kwargs) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", **kwargs)
    return out.getvalue()


def bomb_png(side: int = 20000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (400 megapixels): Pillow's guard must stop it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = zlib.compress(b"\x00" * (side + 1) * 8)  # a few rows only; decoding should never get there
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def rotated_library(photo_dir: Path, lib: Path) -> Path:
    """`lib` (made here) holding chelsea.jpg, a copy of it turned 90 degrees (chelsea-rot90.jpg) and an unrelated
    photo (coffee.jpg), from the bundled photos in `photo_dir`: what the mirrored-and-rotated tests search."""
    lib.mkdir()
    chelsea = Image.open(photo_dir / "chelsea.jpg")
    chelsea.save(lib / "chelsea.jpg", quality=92)
    chelsea.transpose(Image.Transpose.ROTATE_270).save(lib / "chelsea-rot90.jpg", quality=92)
    (lib / "coffee.jpg").write_bytes((photo_dir / "coffee.jpg").read_bytes())
    return lib


def build_corpus(folder: Path) -> Path:
    """Write every case of EXPECTED into `folder` plus a symlink loop; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    pix = gradient()
    photo = jpeg_bytes(gradient(640, 480), quality=90)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(photo[: len(photo) // 3])
    (folder / "text-as-jpg.jpg").write_text("this is a text file, not a picture\n")
    (folder / "random-bytes.png").write_bytes(np.random.default_rng(7).bytes(4096))
    (folder / "bomb.png").write_bytes(bomb_png())
    Image.fromarray(pix).convert("CMYK").save(folder / "cmyk.jpg")
    rgba = np.dstack([pix, np.tile(np.linspace(0, 255, pix.shape[1], dtype=np.uint8), (pix.shape[0], 1))])
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    Image.fromarray(pix).convert("P").save(folder / "palette.gif")
    transparent = Image.fromarray(pix).convert("P")
    transparent.info["transparency"] = 0
    transparent.save(folder / "palette-transparent.png", transparency=0)
    frames = [Image.fromarray(np.roll(pix, 10 * i, axis=1)).convert("P") for i in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.fromarray(gradient()[..., 0].astype(np.uint16) * 257).save(folder / "gray16.png")
    rotated = Image.fromarray(gradient(120, 60))
    exif = rotated.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW on display
    rotated.save(folder / "exif-rotated.jpg", exif=exif)
    Image.new("RGB", (1, 1), (200, 30, 30)).save(folder / "one-pixel.png")
    Image.fromarray(gradient(4000, 10)).save(folder / "wide-4000x10.png")
    (folder / "ünïcode ñame 写真.jpg").write_bytes(photo)
    (folder / "new\nline.jpg").write_bytes(jpeg_bytes(np.roll(gradient(640, 480), 50, axis=0)))
    Image.fromarray(pix).save(folder / "photo.webp")
    Image.fromarray(pix).save(folder / "photo.bmp")
    Image.fromarray(pix).save(folder / "photo.tiff")
    Image.fromarray(np.flipud(pix)).save(folder / "png-named.jpg", format="PNG")
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "sub" / "deeper" / "nested.jpg").write_bytes(jpeg_bytes(np.fliplr(gradient(300, 200))))
    _write_library_kinds(folder, pix)
    os.symlink(folder, folder / "sub" / "deeper" / "loop-to-top")  # a symlink loop
    os.symlink(folder / "cmyk.jpg", folder / "sub" / "link-to-cmyk.jpg")  # the same file twice
    (folder / "notes.txt").write_text("not an image suffix: ignored, not reported")
    return folder


def _write_library_kinds(folder: Path, pix: np.ndarray) -> None:
    photo = jpeg_bytes(gradient(320, 200), quality=90)
    (folder / "no-eoi.jpg").write_bytes(photo[:-2])
    out = io.BytesIO()
    Image.fromarray(pix).save(out, "PNG")
    png = out.getvalue()
    bad_text = b"tEXt" + b"Comment\0damaged"
    damaged = struct.pack(">I", len(bad_text) - 4) + bad_text + struct.pack(">I", zlib.crc32(bad_text) ^ 1)
    (folder / "damaged-metadata.png").write_bytes(png[:33] + damaged + png[33:])
    big = io.BytesIO()
    Image.fromarray(gradient(640, 480)).save(big, "PNG")
    (folder / "truncated.png").write_bytes(big.getvalue()[: len(big.getvalue()) * 4 // 10])
    header = struct.pack("<4sIIIIIII44s", b"DDS ", 124, 0x1007, 16, 16, 0, 0, 0, b"\0" * 44)
    pixel_format = struct.pack("<II4sIIIII", 32, 0x4, b"XYZW", 0, 0, 0, 0, 0)
    (folder / "texture.dds").write_bytes(header + pixel_format + struct.pack("<5I", 0x1000, 0, 0, 0, 0) + bytes(256))
    pillow_heif.register_heif_opener()  # HEIF writing
    Image.fromarray(pix).save(folder / "phone.heic", "HEIF", quality=80)
    Image.fromarray(pix).save(folder / "photo.avif", "AVIF", quality=80)
    right = Image.fromarray(np.ascontiguousarray(pix[:, ::-1]))
    Image.fromarray(pix).save(folder / "stereo.mpo", "MPO", save_all=True, append_images=[right])
    (folder / "camera.dng").write_bytes(dng_bytes(gradient(400, 300)))
    Image.fromarray(pix).save(folder / "wide-gamut.jpg", "JPEG", icc_profile=rgb_profile())
