"""Safe image loading: anything Pillow can decode becomes an oriented RGB image, anything else an ImageError."""

from __future__ import annotations

import io
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Pillow's own decompression-bomb guard stays on (DecompressionBombError above 2x MAX_IMAGE_PIXELS,
# about 179 megapixels). Its warning for 89-179 MP is silenced: such images are legitimate photos.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)
ImageFile.LOAD_TRUNCATED_IMAGES = False

BACKGROUND = (128, 128, 128)  # neutral grey behind transparent pixels
HIGH_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class ImageError(Exception):
    """A file or buffer that cannot be used as an image. `reason` is short and meant for users."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class LoadedImage:
    image: Image.Image  # RGB, EXIF orientation applied; may be downscaled when `draft` was asked for
    width: int  # the full image's oriented size, whatever the draft
    height: int
    format: str | None


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, or ImageError saying why they cannot be read."""
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or device would block or never end
            raise ImageError("is a folder, not a file" if path.is_dir() else "not a regular file")
        return path.read_bytes()
    except IsADirectoryError:
        raise ImageError("is a folder, not a file") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}") from None


def load_image(source: str | Path | bytes, draft: tuple[int, int] | None = None) -> LoadedImage:
    """Decode `source` (a path or the file's bytes). The format is sniffed from the content.

    `draft`: a size the caller will shrink to anyway; JPEGs are then decoded at a reduced scale
    (still at least that size), which is several times faster for large photos.
    """
    data = source if isinstance(source, bytes | bytearray) else read_bytes(source)
    if not data:
        raise ImageError("empty file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
            width, height = img.size
            if draft and fmt == "JPEG":
                img.draft("RGB", draft)
            img.load()  # the first frame only, for animations
            orientation = img.getexif().get(ImageOps.ExifTags.Base.Orientation, 1)
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            rgb = _to_rgb(ImageOps.exif_transpose(img))
    except Image.DecompressionBombError as exc:
        raise ImageError(f"too large to decode safely (decompression bomb guard): {exc}") from None
    except UnidentifiedImageError:
        raise ImageError("not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated and corrupt data as OSError; some plugins use SyntaxError/ValueError.
        raise ImageError(f"corrupt or truncated image data: {exc}") from None
    except Image.DecompressionBombWarning as exc:  # pragma: no cover - only if warnings are errors
        raise ImageError(f"too large to decode safely: {exc}") from None
    if min(rgb.size) < 1:
        raise ImageError("image has no pixels")
    return LoadedImage(rgb, width, height, fmt)


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB from any mode: 16-bit and float scaled (not clipped), transparency over a neutral grey."""
    if img.mode == "RGB":
        return img
    if img.mode in HIGH_BIT_MODES:
        return Image.fromarray(_scale_to_uint8(np.asarray(img)), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, ...


def _scale_to_uint8(pixels: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(pixels.astype(np.float64))
    peak = values.max() if values.size else 0.0
    # Float images are conventionally 0..1; integer ones are 16-bit data, or 8-bit data stored wide.
    top = 1.0 if pixels.dtype.kind == "f" and peak <= 1.0 else 65535.0 if peak > 255 else 255.0
    return np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
