"""Minimal Adobe DNG files (DNG specification 1.4), written by hand: the test suite's camera RAW input.

Nothing installed writes DNG, and real camera files are megabytes; LibRaw (rawpy) reads these like a camera's.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

SHORT, LONG, RATIONAL, SRATIONAL, BYTE, ASCII = 3, 4, 5, 10, 1, 2
WHITE_LEVEL = 4095  # 12-bit sensor data


def dng_bytes(rgb: np.ndarray, preview: np.ndarray | None = None, orientation: int = 1) -> bytes:
    """A DNG of the (h, w, 3) uint8 picture `rgb` as RGGB Bayer sensor data (12-bit, uncompressed), optionally
    with `preview` (an (h', w', 3) uint8 picture) as its embedded JPEG preview in IFD0, the raw in a SubIFD."""
    height, width = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    linear = (rgb[:height, :width].astype(np.float64) / 255.0) ** 2.2 * WHITE_LEVEL  # sRGB-ish to linear
    cfa = np.empty((height, width), np.uint16)
    cfa[0::2, 0::2] = linear[0::2, 0::2, 0]  # R
    cfa[0::2, 1::2] = linear[0::2, 1::2, 1]  # G
    cfa[1::2, 0::2] = linear[1::2, 0::2, 1]  # G
    cfa[1::2, 1::2] = linear[1::2, 1::2, 2]  # B
    raw_data = cfa.astype("<u2").tobytes()
    dng_tags = [
        (274, SHORT, [orientation]),
        (50706, BYTE, [1, 4, 0, 0]),  # DNGVersion
        (50708, ASCII, b"image-search test camera\x00"),  # UniqueCameraModel
        (50721, SRATIONAL, [(1, 1), (0, 1), (0, 1), (0, 1), (1, 1), (0, 1), (0, 1), (0, 1), (1, 1)]),  # ColorMatrix1
        (50728, RATIONAL, [(1, 1), (1, 1), (1, 1)]),  # AsShotNeutral
        (50778, SHORT, [21]),  # CalibrationIlluminant1: D65
    ]
    raw_tags = [
        (254, LONG, [0]), (256, LONG, [width]), (257, LONG, [height]), (258, SHORT, [16]), (259, SHORT, [1]),
        (262, SHORT, [32803]),  # PhotometricInterpretation: CFA
        (273, LONG, ["raw"]), (277, SHORT, [1]), (278, LONG, [height]), (279, LONG, [len(raw_data)]),
        (284, SHORT, [1]), (33421, SHORT, [2, 2]), (33422, BYTE, [0, 1, 1, 2]),  # CFA pattern RGGB
        (50714, LONG, [0]), (50717, LONG, [WHITE_LEVEL]),  # BlackLevel, WhiteLevel
    ]
    if preview is None:
        return _tiff([(raw_tags + dng_tags, {"raw": raw_data})])
    out = io.BytesIO()
    Image.fromarray(preview).save(out, "JPEG", quality=90)
    jpeg = out.getvalue()
    preview_tags = [
        (254, LONG, [1]), (256, LONG, [preview.shape[1]]), (257, LONG, [preview.shape[0]]),
        (258, SHORT, [8, 8, 8]), (259, SHORT, [7]), (262, SHORT, [6]),  # JPEG, YCbCr
        (273, LONG, ["jpeg"]), (277, SHORT, [3]), (278, LONG, [preview.shape[0]]), (279, LONG, [len(jpeg)]),
        (330, LONG, ["ifd1"]),  # SubIFDs: the raw image
    ]
    return _tiff([(preview_tags + dng_tags, {"jpeg": jpeg}), (raw_tags, {"raw": raw_data})])


def _tiff(ifds: list[tuple[list, dict[str, bytes]]]) -> bytes:
    """Little-endian TIFF: each IFD's tags (tag, type, values) with values "name" pointing at its blobs or at
    "ifd<n>"; the first IFD is IFD0, the others are reached only through SubIFDs."""
    sizes = {SHORT: 2, LONG: 4, RATIONAL: 8, SRATIONAL: 8, BYTE: 1, ASCII: 1}
    offsets: dict[str, int] = {}
    pos = 8
    for n, (tags, blobs) in enumerate(ifds):  # layout: IFD, its out-of-line values, its blobs
        offsets[f"ifd{n}"] = pos
        pos += 2 + 12 * len(tags) + 4
        for _, kind, values in tags:
            size = sizes[kind] * len(values)
            pos += size + size % 2 if size > 4 else 0
        for name, blob in blobs.items():
            offsets[name] = pos
            pos += len(blob) + len(blob) % 2
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for tags, blobs in ifds:
        extra = bytearray()
        ifd_end = len(out) + 2 + 12 * len(tags) + 4
        entries = bytearray(struct.pack("<H", len(tags)))
        for tag, kind, values in sorted(tags, key=lambda t: t[0]):
            data = _pack(kind, [offsets[v] if isinstance(v, str) else v for v in values])
            entries += struct.pack("<HHI", tag, kind, len(values))
            if len(data) <= 4:
                entries += data.ljust(4, b"\x00")
            else:
                entries += struct.pack("<I", ifd_end + len(extra))
                extra += data + b"\x00" * (len(data) % 2)
        out += entries + struct.pack("<I", 0) + extra
        for blob in blobs.values():
            out += blob + b"\x00" * (len(blob) % 2)
    return bytes(out)


def _pack(kind: int, values) -> bytes:
    if kind == ASCII:
        return bytes(values)
    if kind in (RATIONAL, SRATIONAL):
        return b"".join(struct.pack("<II" if kind == RATIONAL else "<ii", *v) for v in values)
    return struct.pack("<" + {SHORT: "H", LONG: "I", BYTE: "B"}[kind] * len(values), *values)
