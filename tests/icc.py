"""A small ICC v2 RGB matrix/TRC profile (ICC.1:2001-04), written by hand: the suite's wide-gamut input.

Pillow's ImageCms can only create sRGB, LAB and XYZ profiles; a photo library also holds ProPhoto, Adobe RGB
and Display P3 ones, which are all this kind of profile: three primaries (XYZ, D50-adapted) and a tone curve.
"""

from __future__ import annotations

import struct

# ProPhoto RGB (ROMM RGB, ISO 22028-2): D50 primaries as the colorants, gamma 1.8.
PROPHOTO = {"r": (0.7977, 0.2880, 0.0), "g": (0.1352, 0.7119, 0.0), "b": (0.0313, 0.0001, 0.8249)}
D50 = (0.9642, 1.0, 0.8249)


def rgb_profile(primaries: dict[str, tuple[float, float, float]] = PROPHOTO, gamma: float = 1.8,
                name: str = "image-search test ProPhoto") -> bytes:
    """ICC profile bytes of an RGB display space with these colorants (PCS XYZ, D50) and a pure gamma curve."""

    def xyz(values):
        return b"XYZ " + b"\0" * 4 + b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    curve = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    text = name.encode("ascii") + b"\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 8 + b"\0" * 3 + b"\0" * 67
    tags = [(b"desc", desc), (b"wtpt", xyz(D50)), (b"rXYZ", xyz(primaries["r"])), (b"gXYZ", xyz(primaries["g"])),
            (b"bXYZ", xyz(primaries["b"])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
            (b"cprt", b"text" + b"\0" * 4 + b"No copyright\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + b"\0" * 24
              + struct.pack(">I", 0) + b"".join(struct.pack(">i", round(v * 65536)) for v in D50) + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body
