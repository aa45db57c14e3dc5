"""Safe image loading: every image file a photo library holds becomes an oriented sRGB image, anything else an
ImageError with a short reason naming the format and the problem.

Formats: whatever Pillow opens (JPEG, MPO, PNG, GIF, WebP, BMP, TIFF, AVIF, ...), HEIF/HEIC through pillow-heif,
camera RAW through rawpy (LibRaw). What viewers show is decoded: a JPEG missing only its end marker and a PNG
with damaged or oversized metadata chunks are read, with a warning. Embedded ICC profiles are converted to sRGB
with LittleCMS (Pillow's ImageCms). Decoder warnings are returned with the image instead of printed.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pillow_heif
import rawpy
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from core.errors import INVALID, UserError
from core.formats import RAW_EXTENSIONS, sniff

# Pillow's own decompression-bomb guard stays on (DecompressionBombError above 2x MAX_IMAGE_PIXELS,
# about 179 megapixels). Its warning for 89-179 MP is silenced: such images are legitimate photos.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)
pillow_heif.register_heif_opener()

BACKGROUND = (128, 128, 128)  # neutral grey behind transparent pixels
HIGH_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
RAW_KINDS = {"CR2", "CR3", "RAF", "ORF", "RW2"}  # sniff() names that only LibRaw reads
MIN_PREVIEW = 224  # a RAW's embedded preview is used when its shorter side is at least the network's input
DNG_VERSION_TAG = 50706  # Adobe DNG specification 1.4, "DNGVersion"
NEW_SUBFILE_TYPE_TAG = 254  # TIFF 6.0: bit 0 set = a reduced-resolution version of another image in the file
# EXIF Orientation (CIPA DC-008, tag 0x0112) -> the transpose that shows the image upright (as ImageOps does).
ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# LibRaw's `sizes.flip` (dcraw's convention) -> the transpose that shows its embedded preview upright.
RAW_FLIP = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}
PNG_TEXT_CHUNKS = {b"tEXt", b"zTXt", b"iTXt"}
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
MAX_REASON = 300  # characters
BAND_ROWS = 256  # rows converted at a time


class ImageError(UserError):
    """A file or buffer that cannot be used as an image. `reason` is short, one line and meant for users."""

    kind = INVALID
    title = "Not a usable image"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class LoadedImage:
    """An image as load_image read it: oriented sRGB RGB pixels, the full size and the decoders' warnings."""
    image: Image.Image  # RGB, sRGB, oriented; smaller than width x height when reduced for `draft`, and for a
    # camera RAW without a large enough embedded preview (demosaiced at half size)
    width: int  # the full image's oriented size in pixels, whatever the draft
    height: int
    format: str | None  # Pillow's format name ("JPEG", "MPO", "PNG", "HEIF", ...) or the RAW kind ("NEF", "DNG")
    warnings: tuple[str, ...] = ()  # what the decoders warned about, and what was tolerated


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, or ImageError saying why they cannot be read."""
    with open_regular_file(path) as fp:
        try:
            return fp.read()
        except OSError as exc:
            raise ImageError(f"cannot read file: {exc.strerror or exc}") from None


@contextlib.contextmanager
def open_regular_file(path: str | Path) -> Iterator[BinaryIO]:
    """The file opened for binary reading; ImageError if it is missing, unreadable, a folder, or not a regular
    file (a FIFO, socket or device would block or never end)."""
    with contextlib.suppress(OSError):  # opening a FIFO for reading blocks until a writer comes: check first
        if not stat.S_ISREG(os.stat(path).st_mode) and not stat.S_ISDIR(os.stat(path).st_mode):
            raise ImageError("not a regular file")
    try:
        fp = open(path, "rb")  # noqa: SIM115 - closed below, after the regular-file check
    except IsADirectoryError:
        raise ImageError("is a folder, not a file") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}") from None
    with fp:
        if not stat.S_ISREG(os.fstat(fp.fileno()).st_mode):  # replaced meanwhile
            raise ImageError("not a regular file")
        yield fp


def load_image(source: str | Path | bytes, draft: tuple[int, int] | None = None) -> LoadedImage:
    """Decode `source` (a path or the file's bytes) into an oriented sRGB RGB image.

    The format is sniffed from the content; a path's extension only says which files are camera RAW when
    their content cannot (DNG, NEF, ARW, PEF and SRW look like TIFF). `draft`: a size (width, height) in
    pixels the caller will shrink to anyway; the image is then decoded reduced early (JPEG DCT scaling, a
    RAW's embedded preview or half-size demosaic, Pillow's `reduce` for the rest), never below that size.
    Raises ImageError for anything that cannot be decoded, whatever the decoder raised.
    """
    if isinstance(source, bytes | bytearray):
        opened: contextlib.AbstractContextManager[BinaryIO] = contextlib.nullcontext(io.BytesIO(source))
        suffix = ""
    else:
        opened, suffix = open_regular_file(source), os.path.splitext(os.fspath(source))[1].lower()
    with _collect_warnings() as warned, opened as fp:
        head = fp.read(64)
        fp.seek(0)
        if not head:
            raise ImageError("empty file")
        kind = sniff(head)
        try:
            loaded = _decode(fp, kind, suffix, draft, warned)
        except ImageError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageError(f"too large to decode safely (decompression bomb guard): {exc}") from None
        except MemoryError:
            raise ImageError(f"{kind or 'image'}: not enough memory to decode") from None
        except Exception as exc:  # a decoder's undocumented failure is this file's reason, never the run's end
            raise ImageError(_reason(kind or _pillow_kind(head), exc)) from None
        if min(loaded.image.size) < 1:
            raise ImageError("image has no pixels")
        loaded.warnings = tuple(dict.fromkeys(warned))  # each once, in order
        return loaded


def _pillow_kind(head: bytes) -> str:
    """The format whose Pillow plugin accepts these first bytes, to name it in a reason."""
    for fmt, (_, accept) in Image.OPEN.items():
        with contextlib.suppress(Exception):
            if accept and accept(head):
                return fmt
    return "image"


def _reason(fmt: str, exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, NotImplementedError | rawpy.LibRawError) and type(exc).__name__ not in text:
        text = f"{type(exc).__name__}: {text}"
    text = f"{fmt}: {text}"
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def _decode(fp: BinaryIO, kind: str | None, suffix: str, draft: tuple[int, int] | None,
            warned: list[str]) -> LoadedImage:
    if kind in RAW_KINDS or (kind in ("TIFF", None) and suffix in RAW_EXTENSIONS):
        return _load_raw(fp, kind if kind in RAW_KINDS else suffix[1:].upper(), draft, warned)
    try:
        img = _open_pillow(fp, kind, warned)
    except ImageError as exc:
        if kind != "TIFF":
            raise
        fp.seek(0)  # TIFF-based RAW sensor data (a CFA) that Pillow cannot read: LibRaw may
        try:
            return _load_raw(fp, "RAW", draft, warned)
        except ImageError:
            raise exc from None
    try:
        fmt = img.format or kind or "image"
        if fmt == "TIFF" and _is_raw_tiff(img):  # a DNG or TIFF-based RAW without its extension
            fp.seek(0)
            try:
                return _load_raw(fp, "DNG" if DNG_VERSION_TAG in img.tag_v2 else "RAW", draft, warned)
            except ImageError:
                if DNG_VERSION_TAG in img.tag_v2:
                    raise
                fp.seek(0)  # a plain TIFF whose first page is a reduced one: Pillow reads that page
        width, height = img.size
        orientation = _orientation(img, warned)
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        icc = img.info.get("icc_profile")
        if draft and fmt in ("JPEG", "MPO"):
            img.draft("RGB", draft)
        try:
            img.load()  # the first frame or page only
        except OSError as exc:
            if fmt not in ("JPEG", "MPO") or "truncated" not in str(exc):
                raise ImageError(_reason(fmt, exc)) from None
            img = _jpeg_without_end_marker(fp, fmt, draft, warned)
        rgb = _to_srgb(_reduced_8bit(img, draft), icc, warned)
        if orientation in ORIENTATION:
            rgb = rgb.transpose(ORIENTATION[orientation])
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise
    except Exception as exc:
        raise ImageError(_reason(fmt, exc)) from None
    return LoadedImage(rgb, width, height, fmt)


def _open_pillow(fp: BinaryIO, kind: str | None, warned: list[str]) -> Image.Image:
    try:
        return Image.open(fp)
    except (UnidentifiedImageError, ValueError) as exc:
        error = exc
    fp.seek(0)
    if kind == "PNG" and (repaired := _png_without_bad_metadata(fp.read(), error, warned)) is not None:
        fp = io.BytesIO(repaired)  # refused for a metadata chunk: without the damaged or oversized ones
        try:
            return Image.open(fp)
        except (UnidentifiedImageError, ValueError) as exc:
            error = exc
    fp.seek(0)
    if kind not in Image.OPEN:
        if isinstance(error, UnidentifiedImageError):
            raise ImageError("not a recognised image format") from None
        raise error
    # Pillow tried every format and says only "cannot identify": ask the format the content claims.
    try:
        Image.OPEN[kind][0](fp).close()
    except Exception as direct:
        raise ImageError(_reason(kind, direct)) from None
    raise ImageError(_reason(kind, error)) from None


def _png_without_bad_metadata(data: bytes, error: Exception, warned: list[str]) -> bytes | None:
    """The PNG without its ancillary chunks that fail their CRC, and without text chunks when Pillow refused
    their size; None if there is no such chunk (the problem is elsewhere). Chunk layout: PNG spec sec. 5.3."""
    keep, dropped, pos = [data[:8]], [], 8
    drop_text = isinstance(error, ValueError)  # Pillow's MAX_TEXT_CHUNK / MAX_TEXT_MEMORY limits
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        body, crc = data[pos + 4 : end - 4], data[end - 4 : end]
        ancillary = bool(kind[0] & 0x20)  # lower-case first letter: safe to ignore (PNG spec sec. 5.4)
        if ancillary and (len(crc) < 4 or zlib.crc32(body) != struct.unpack(">I", crc)[0]):
            dropped.append(f"PNG: damaged metadata chunk {kind.decode('latin-1')} (bad checksum) ignored")
        elif ancillary and drop_text and kind in PNG_TEXT_CHUNKS:
            dropped.append(f"PNG: oversized text chunk {kind.decode('latin-1')} ignored ({error})")
        else:
            keep.append(data[pos:end])
        if kind == b"IEND":
            break
        pos = end
    if not dropped:
        return None
    warned.extend(dropped)
    return b"".join(keep)


def _jpeg_without_end_marker(fp: BinaryIO, fmt: str, draft: tuple[int, int] | None,
                             warned: list[str]) -> Image.Image:
    """Decode a JPEG whose data ends without the EOI marker, if only the marker is missing.

    libjpeg supplies a missing EOI itself, so the data is decoded with one appended. The file is really cut
    short when (a) it does not end inside a scan's entropy-coded data (it stops in a header), (b) the last row
    is flat mid-grey (libjpeg fills a sequential JPEG's missing blocks with zero coefficients), or (c) the
    picture changes when bytes are put between the data and the EOI (libjpeg was still reading the scan).
    Left undetected: a progressive JPEG cut exactly between two scans (it shows, at a lower quality)."""
    fp.seek(0)
    data = fp.read()
    end = b"\xff\xd9"
    if _ends_in_scan_data(data):
        whole, padded = _open_draft(data + end, draft), _open_draft(data + _FILLER + end, draft)
        last_row = np.asarray(whole)[-1].astype(np.int16)
        if not np.all(np.abs(last_row - 128) <= 1) and np.array_equal(np.asarray(whole), np.asarray(padded)):
            warned.append(f"{fmt}: end marker missing; decoded anyway")
            return whole
    raise ImageError(f"{fmt}: file is truncated (image data cut short)")


# Bytes that would be read as entropy-coded data: fixed, never 0xFF (a marker's first byte).
_FILLER = bytes(np.random.default_rng(0).integers(0, 255, 256, dtype=np.uint8))


def _ends_in_scan_data(data: bytes) -> bool:
    """Whether the last marker is a start of scan (SOS, FF DA) with its header whole and data after it. Inside
    entropy-coded data FF is only followed by 00 (stuffing) or D0-D7 (restart markers): ITU T.81 B.1.1.5."""
    at = len(data)
    while (at := data.rfind(b"\xff", 0, at)) >= 0:
        follower = data[at + 1] if at + 1 < len(data) else 0
        if follower not in (0x00, 0xFF) and not 0xD0 <= follower <= 0xD7:
            return follower == 0xDA and at + 2 + int.from_bytes(data[at + 2 : at + 4], "big") < len(data)
    return False


def _open_draft(data: bytes, draft: tuple[int, int] | None) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    if draft:
        img.draft("RGB", draft)
    img.load()
    return img


def _is_raw_tiff(img: Image.Image) -> bool:
    """A TIFF whose first image is a preview of another (DNG, NEF, ARW, PEF, SRW keep the sensor data in a
    sub-IFD) or that carries a DNGVersion tag."""
    tags = img.tag_v2
    return DNG_VERSION_TAG in tags or bool(int(tags.get(NEW_SUBFILE_TYPE_TAG, 0)) & 1)


def _orientation(img: Image.Image, warned: list[str]) -> int:
    try:
        return int(img.getexif().get(ImageOps.ExifTags.Base.Orientation, 1))
    except Exception as exc:  # damaged EXIF: the pixels are still good
        warned.append(f"{img.format}: EXIF unreadable, orientation not applied ({_reason(type(exc).__name__, exc)})")
        return 1


def _load_raw(fp: BinaryIO, fmt: str, draft: tuple[int, int] | None, warned: list[str]) -> LoadedImage:
    """A camera RAW: its embedded preview when large enough (fast), else LibRaw's half-size demosaic (sRGB)."""
    need = max(draft) if draft else MIN_PREVIEW
    try:
        raw = rawpy.imread(fp)
    except (rawpy.LibRawFileUnsupportedError, rawpy.LibRawIOError):  # LibRaw reads past the end of non-RAW data
        raise ImageError(f"{fmt}: not a camera RAW file LibRaw can read, or cut short") from None
    except Exception as exc:
        raise ImageError(_reason(fmt, exc)) from None
    try:
        return _raw_to_image(raw, fmt, need, draft, warned)
    except ImageError:
        raise
    except rawpy.LibRawIOError:
        raise ImageError(f"{fmt}: sensor data cut short or unreadable") from None
    except Exception as exc:
        raise ImageError(_reason(fmt, exc)) from None
    finally:
        raw.close()


def _raw_to_image(raw: rawpy.RawPy, fmt: str, need: int, draft: tuple[int, int] | None,
                  warned: list[str]) -> LoadedImage:
    """The embedded preview, oriented, when its shorter side is at least `need` pixels, else the sensor data
    demosaiced at half size (LibRaw's own flip and sRGB output)."""
    sizes = raw.sizes
    width, height = (sizes.height, sizes.width) if sizes.flip in (5, 6) else (sizes.width, sizes.height)
    preview = _raw_preview(raw, need, draft, warned)
    if preview is not None:
        orientation = _orientation(preview, warned)
        icc = preview.info.get("icc_profile")
        rgb = _to_srgb(_reduced_8bit(preview, draft), icc, warned)
        if orientation in ORIENTATION:
            rgb = rgb.transpose(ORIENTATION[orientation])
        elif sizes.flip in RAW_FLIP:
            rgb = rgb.transpose(RAW_FLIP[sizes.flip])
    else:
        pixels = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
        rgb = _reduced_8bit(Image.fromarray(pixels, "RGB"), draft)
    return LoadedImage(rgb, width, height, fmt)


def _raw_preview(raw: rawpy.RawPy, need: int, draft: tuple[int, int] | None,
                 warned: list[str]) -> Image.Image | None:
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            preview = Image.open(io.BytesIO(thumb.data))
            if min(preview.size) < need:
                return None
            if draft:
                preview.draft("RGB", draft)
            preview.load()
            return preview
        preview = Image.fromarray(thumb.data)
        return preview if min(preview.size) >= need else None
    except Exception as exc:  # a damaged preview: the sensor data may still be good
        warned.append(_reason("RAW preview unreadable, demosaiced instead", exc))
        return None


def _reduced_8bit(img: Image.Image, draft: tuple[int, int] | None) -> Image.Image:
    """RGB, RGBA, L, LA or CMYK (what ICC profiles apply to), 8 bits per channel; with `draft`, shrunk by an
    integer factor (box filter) while staying at least that size on both sides in any orientation.

    Converted and reduced a band of rows at a time: no full-size copy is made of an image Pillow decoded
    whole (a box filter over bands whose height is a multiple of the factor equals one over the image)."""
    top = _scale_top(img) if img.mode in HIGH_BIT_MODES else 0.0
    factor = min(img.width, img.height) // max(draft) if draft else 1
    if factor < 2:
        return _to_8bit(img, top)
    band = factor * max(1, BAND_ROWS // factor)
    parts = [_to_8bit(img.crop((0, y, img.width, min(y + band, img.height))), top).reduce(factor)
             for y in range(0, img.height, band)]
    out = Image.new(parts[0].mode, (parts[0].width, sum(p.height for p in parts)))
    y = 0
    for part in parts:
        out.paste(part, (0, y))
        y += part.height
    return out


def _to_8bit(img: Image.Image, top: float) -> Image.Image:
    if img.mode in HIGH_BIT_MODES:
        return Image.fromarray(_scale_to_uint8(img, top), "L")
    if img.mode in ("RGB", "RGBA", "L", "LA", "CMYK"):
        return img
    return img.convert("RGBA" if "A" in img.mode or "a" in img.mode or "transparency" in img.info else "RGB")


def _scale_top(img: Image.Image) -> float:
    """The value 16-bit and float greys are scaled from: float images are conventionally 0..1; integer ones
    are 16-bit data, or 8-bit data stored wide."""
    peak = float(img.getextrema()[1])
    if img.mode == "F" and (peak != peak or peak <= 1.0):  # NaN or 0..1
        return 1.0
    return 65535.0 if peak > 255 else 255.0


def _scale_to_uint8(img: Image.Image, top: float) -> np.ndarray:
    """(h, w) uint8 of a 16-bit or float grey image scaled (not clipped) from `top`, BAND_ROWS rows at a time:
    the float32 temporaries stay small and no float64 copy of the image is made."""
    out = np.empty((img.height, img.width), np.uint8)
    for y in range(0, img.height, BAND_ROWS):
        band = np.asarray(img.crop((0, y, img.width, min(y + BAND_ROWS, img.height))), dtype=np.float32)
        out[y : y + BAND_ROWS] = np.clip(np.nan_to_num(band) * np.float32(255.0 / top) + 0.5, 0, 255)
    return out


def _to_srgb(img: Image.Image, icc: bytes | None, warned: list[str]) -> Image.Image:
    """RGB in sRGB: the embedded ICC profile converted with LittleCMS; transparency over a neutral grey.
    Without a profile the pixels are taken as sRGB (what browsers do). A broken profile is a warning."""
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", img.size, BACKGROUND + (255,))
        img = Image.alpha_composite(background, img.convert("RGBA")).convert("RGB" if img.mode == "RGBA" else "L")
    if icc:
        try:
            return ImageCms.applyTransform(img, _to_srgb_transform(icc, img.mode))
        except Exception as exc:  # unreadable, or made for another colour space than the pixels'
            warned.append(_reason("colour profile not applied", exc))
    return img if img.mode == "RGB" else img.convert("RGB")  # L, CMYK, YCbCr, LAB, HSV, ...


@functools.lru_cache(maxsize=16)
def _to_srgb_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform:
    """The LittleCMS transform from this profile to sRGB (perceptual intent), built once per profile: most
    files of a library share a few (a camera's, a phone's Display P3). NOCACHE: shared by threads safely."""
    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    return ImageCms.buildTransform(profile, SRGB, mode, "RGB", flags=ImageCms.Flags.NOCACHE)


@contextlib.contextmanager
def _collect_warnings() -> Iterator[list[str]]:
    """Python warnings raised in this thread meanwhile go to the yielded list, not to the terminal.

    A thread-local sink behind one showwarning hook: `warnings.catch_warnings` swaps process-wide state and
    would mix up decodes running in threads (the desktop's and the API's thumbnails)."""
    with _HOOK_LOCK:
        if not getattr(warnings.showwarning, "collects_decoder_warnings", False):
            warnings.showwarning = _hook(warnings.showwarning)
    outer = getattr(_SINK, "warnings", None)
    _SINK.warnings = sink = []
    try:
        yield sink
    finally:
        _SINK.warnings = outer


_SINK = threading.local()
_HOOK_LOCK = threading.Lock()


def _hook(previous):
    def showwarning(message, category, filename, lineno, file=None, line=None):
        sink = getattr(_SINK, "warnings", None)
        if sink is None:
            previous(message, category, filename, lineno, file, line)
        else:
            sink.append(" ".join(str(message).split()))

    showwarning.collects_decoder_warnings = True
    return showwarning
