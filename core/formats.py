"""Which files are images: by name (extensions) and, for unknown or missing extensions, by content (magic bytes).

Magic numbers from each format's specification: JPEG (ITU T.81, SOI FF D8 then a marker), PNG (RFC 2083 sec. 3.1),
GIF (GIF89a spec), WebP (RIFF container, Google's WebP container spec), BMP (BITMAPFILEHEADER, "BM" then the
DIB header size at byte 14), TIFF (TIFF 6.0 sec. 2; BigTIFF uses 43), ISO base media files (ISO/IEC 14496-12
`ftyp` box: HEIF/HEIC brands of ISO/IEC 23008-12, AVIF brands of the AV1 image format, Canon CR3's `crx`),
and the camera makers' own headers as LibRaw reads them (CR2: "CR" at byte 8; ORF: "IIRO"/"IIRS"/"MMOR";
RW2: "IIU"; RAF: "FUJIFILMCCD-RAW").
"""

from __future__ import annotations

from PIL import Image, ImageFile

# Camera RAW files, decoded with rawpy (LibRaw). DNG, NEF, ARW, PEF and SRW are TIFF inside: they cannot be
# told from a plain TIFF by their first bytes, only by their extension or their tags (see core.images).
RAW_EXTENSIONS: frozenset[str] = frozenset(
    {".cr2", ".cr3", ".nef", ".nrw", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw", ".dng"}
)

# Formats Pillow registers that are not pictures a photo library means: video (MPEG), PostScript documents
# (need Ghostscript), and stub plugins that identify a file but need a handler this product never installs
# (BUFR, GRIB, HDF5, WMF/EMF off Windows).
_NOT_PICTURES = {"MPEG", "EPS"}


def _pillow_extensions() -> frozenset[str]:
    Image.init()
    return frozenset(
        ext
        for ext, fmt in Image.registered_extensions().items()
        # MPO has no opener of its own: Pillow's JPEG opener returns MPO files (Pillow's MpoImagePlugin).
        if fmt == "MPO" or (fmt in Image.OPEN and fmt not in _NOT_PICTURES and not _is_stub(fmt))
    )


def _is_stub(fmt: str) -> bool:
    factory = Image.OPEN[fmt][0]
    return isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)


# Lower-case, with the dot. HEIF/HEIC come from pillow-heif (registered by core.images), AVIF from Pillow.
IMAGE_EXTENSIONS: frozenset[str] = _pillow_extensions() | {".heic", ".heif", ".hif", ".avif"} | RAW_EXTENSIONS

_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}


def sniff(head: bytes) -> str | None:
    """The format of a file from its first bytes, or None if it is not a recognised image.

    `head`: the file's first bytes; 64 are enough (fewer may miss brands listed late in an ISO-BMFF `ftyp`
    box). Returns a format name: "JPEG" (also MPO, a JPEG followed by more), "PNG", "GIF", "WEBP", "BMP",
    "TIFF" (also DNG, NEF, ARW, PEF, SRW), "CR2", "ORF", "RW2", "RAF", "HEIF", "AVIF", "CR3".
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    if head.startswith(b"FUJIFILMCCD-RAW"):
        return "RAF"
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR"):
        return "ORF"
    if head[:4] == b"IIU\x00":
        return "RW2"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "CR2" if head[8:10] == b"CR" else "TIFF"
    if head[4:8] == b"ftyp" and len(head) >= 12:
        return _iso_bmff_brand(head)
    return None


def _iso_bmff_brand(head: bytes) -> str | None:
    box_size = int.from_bytes(head[:4], "big")
    end = min(len(head), box_size) if box_size >= 16 else len(head)
    major, compatible = head[8:12], [head[i : i + 4] for i in range(16, end - 3, 4)]
    if major == b"crx ":
        return "CR3"
    # The major brand decides; "mif1"/"msf1" only say "some HEIF-structured image": then the compatible ones do.
    brands = [major] if major not in (b"mif1", b"msf1") else compatible
    if any(b in _AVIF_BRANDS for b in brands):
        return "AVIF"
    if any(b in _HEIF_BRANDS for b in [major, *brands]):
        return "HEIF"
    return None
