"""Photo metadata read from a file's EXIF: when it was taken, with which camera and lens, and its size.

Pillow reads the EXIF of JPEG, TIFF, WebP, PNG, HEIC/AVIF (pillow-heif, registered by core.images) and of
TIFF-based RAW files whose first IFD Pillow opens (DNG, most NEF and CR2). Tags (EXIF 2.32, CIPA DC-008):
DateTimeOriginal 0x9003 and OffsetTimeOriginal 0x9011 in the Exif IFD 0x8769, Make 0x010F and Model 0x0110
in IFD0, LensModel 0xA434, Orientation 0x0112. Reading never raises for bad metadata: what cannot be read
is None, and the date falls back to the file's mtime.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from PIL import Image

import core.images  # noqa: F401 - registers the HEIC/AVIF opener (pillow-heif) with Pillow

EXIF_IFD = 0x8769
DATETIME_ORIGINAL = 0x9003
OFFSET_TIME_ORIGINAL = 0x9011
DATETIME = 0x0132  # IFD0's "file changed" time: a last resort when DateTimeOriginal is absent
MAKE = 0x010F
MODEL = 0x0110
LENS_MODEL = 0xA434
ORIENTATION = 0x0112
SWAPPED_ORIENTATIONS = {5, 6, 7, 8}  # rotated a quarter turn: width and height swap
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class PhotoMetadata:
    """What a photo says about itself.

    `taken`: when the picture was taken; timezone-aware when the file records OffsetTimeOriginal, else naive
    local time as the camera recorded it; from the file's mtime (naive local time) when `taken_source` is
    "mtime". `camera`: "Make Model" with the make not repeated ("Canon EOS R5", not "Canon Canon EOS R5").
    `width`, `height`: pixels after EXIF orientation, None when Pillow cannot open the file.
    """

    taken: datetime | None
    taken_source: str  # "exif" or "mtime"
    camera: str | None = None
    lens: str | None = None
    width: int | None = None
    height: int | None = None

    def taken_iso(self) -> str | None:
        """`taken` as ISO 8601 (with its offset when known), or None."""
        return self.taken.isoformat() if self.taken else None

    def taken_local(self) -> str | None:
        """The wall-clock time as recorded, "YYYY-MM-DDTHH:MM:SS", ignoring any offset: the form date
        filters compare (sorts as text), or None."""
        return self.taken.replace(tzinfo=None).isoformat(timespec="seconds") if self.taken else None


def read_metadata(path: str | Path) -> PhotoMetadata:
    """The metadata of one file (an fs path). Never raises for a bad or missing EXIF block; a file that
    cannot be opened at all gives only its mtime (or nothing, when even stat fails)."""
    taken, camera, lens, width, height = None, None, None, None, None
    try:
        with Image.open(path) as img:
            exif = img.getexif()
            sub = _exif_ifd(exif)
            taken = _taken(sub, exif)
            camera = camera_name(_text(exif.get(MAKE)), _text(exif.get(MODEL)))
            lens = _text(sub.get(LENS_MODEL)) or _text(exif.get(LENS_MODEL))
            width, height = img.size
            if _int(exif.get(ORIENTATION)) in SWAPPED_ORIENTATIONS:
                width, height = height, width
    except Exception:
        pass
    if taken is not None:
        return PhotoMetadata(taken, "exif", camera, lens, width, height)
    try:
        mtime = datetime.fromtimestamp(os.stat(path).st_mtime)
    except (OSError, ValueError, OverflowError):
        mtime = None
    return PhotoMetadata(mtime, "mtime", camera, lens, width, height)


def camera_name(make: str | None, model: str | None) -> str | None:
    """"Make Model" without the make twice: ("Canon", "Canon EOS R5") gives "Canon EOS R5", ("NIKON
    CORPORATION", "NIKON D750") gives "NIKON D750" (the model already names the maker's first word)."""
    if not model:
        return make or None
    if not make:
        return model
    first = make.split()[0].casefold()
    return model if model.casefold().startswith(first) else f"{make} {model}"


def _exif_ifd(exif: Image.Exif) -> dict:
    try:
        return exif.get_ifd(EXIF_IFD) or {}
    except Exception:  # a broken Exif IFD pointer: fall back to IFD0's tags
        return {}


def _taken(sub: dict, ifd0: Image.Exif) -> datetime | None:
    for tags in (sub, ifd0):
        when = _exif_datetime(_text(tags.get(DATETIME_ORIGINAL)))
        if when is not None:
            offset = _offset(_text(tags.get(OFFSET_TIME_ORIGINAL)) or _text(sub.get(OFFSET_TIME_ORIGINAL)))
            return when.replace(tzinfo=offset) if offset else when
    return _exif_datetime(_text(ifd0.get(DATETIME)))


def _exif_datetime(text: str | None) -> datetime | None:
    """EXIF's "YYYY:MM:DD HH:MM:SS" (blank or zero dates, "0000:00:00 00:00:00", mean unknown)."""
    if not text:
        return None
    try:
        return datetime.strptime(text.strip()[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def _offset(text: str | None) -> timezone | None:
    """EXIF's "+HH:MM" / "-HH:MM"."""
    match = _OFFSET.match(text.strip()) if text else None
    if not match:
        return None
    sign = -1 if match.group(1) == "-" else 1
    try:
        return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
    except ValueError:
        return None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = " ".join(value.replace("\x00", " ").split())
    return value or None


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
