"""Safe image loading: every awkward file becomes RGB or a clear ImageError."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import tracemalloc
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from core.images import ImageError, load_image
from tests.corpus import EXPECTED, build_corpus, gradient, jpeg_bytes
from tests.dng import dng_bytes
from tests.icc import rgb_profile


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_loads_or_fails_clearly(corpus, name):
    if EXPECTED[name]:
        loaded = load_image(corpus / name)
        assert loaded.image.mode == "RGB"
        assert loaded.image.size[0] >= 1 and loaded.image.size[1] >= 1
    else:
        with pytest.raises(ImageError) as err:
            load_image(corpus / name)
        assert err.value.reason and "\n" not in err.value.reason


def test_reasons_say_what_is_wrong(corpus):
    def reason(name):
        with pytest.raises(ImageError) as err:
            load_image(corpus / name)
        return err.value.reason

    assert reason("empty.jpg") == "empty file"
    assert "not a recognised image" in reason("text-as-jpg.jpg")
    assert "truncated" in reason("truncated.jpg")
    assert "decompression bomb" in reason("bomb.png")


def test_exif_orientation_is_applied(corpus):
    loaded = load_image(corpus / "exif-rotated.jpg")
    assert loaded.image.size == (60, 120)
    assert (loaded.width, loaded.height) == (60, 120)


def test_sixteen_bit_is_scaled_not_clipped(corpus):
    pixels = np.asarray(load_image(corpus / "gray16.png").image)[..., 0]
    expected = gradient()[..., 0]
    assert np.abs(pixels.astype(int) - expected).max() <= 1
    assert len(np.unique(pixels)) > 50


def test_transparency_is_composited_on_grey(corpus):
    pixels = np.asarray(load_image(corpus / "rgba.png").image)
    assert tuple(pixels[0, 0]) == (128, 128, 128)  # alpha 0 in the first column


def test_animated_gives_the_first_frame(corpus):
    first = np.asarray(Image.open(corpus / "animated.gif").convert("RGB"))
    assert np.array_equal(np.asarray(load_image(corpus / "animated.gif").image), first)


def test_content_is_sniffed_not_the_extension(corpus):
    assert load_image(corpus / "png-named.jpg").format == "PNG"


def test_bytes_and_draft():
    data = jpeg_bytes(gradient(2000, 1500))
    loaded = load_image(data, draft=(224, 224))
    assert (loaded.width, loaded.height) == (2000, 1500)
    assert 224 <= min(loaded.image.size) < 1500  # decoded at a reduced scale, never below the target


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)
    os.mkfifo(tmp_path / "pipe.jpg")  # reading it would block forever
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path / "pipe.jpg")


def test_a_file_without_read_permission(monkeypatch):
    folder = Path(tempfile.mkdtemp(prefix="locked-"))  # world-traversable, unlike pytest's tmp_path
    try:
        folder.chmod(0o755)
        locked = folder / "locked.jpg"
        locked.write_bytes(jpeg_bytes(gradient()))
        locked.chmod(0)
        if os.geteuid() != 0:
            with pytest.raises(ImageError, match="permission denied"):
                load_image(locked)
            return
        # Root reads any file, so check as an unprivileged user in a child process.
        code = ("import sys; from core.images import ImageError, load_image\n"
                "try: load_image(sys.argv[1])\nexcept ImageError as e: print(e.reason)")
        drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        out = subprocess.run([*drop, sys.executable, "-c", code, str(locked)], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parents[1], timeout=60)
        if out.returncode == 0:
            assert out.stdout.strip() == "permission denied", out.stderr
        else:  # this checkout is not readable by that user: refuse the read the way the kernel would

            def refuse(self):
                raise PermissionError(13, "Permission denied", str(self))

            monkeypatch.setattr(Path, "read_bytes", refuse)
            with pytest.raises(ImageError, match="permission denied"):
                load_image(locked)
    finally:
        shutil.rmtree(folder)


# --- every format of a photo library (inputs written by Pillow, pillow-heif and tests/dng.py) ---------------


def mean_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


def picture(width: int = 200, height: int = 150) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, 255 - (x + y) * 255 // (width + height)], -1).astype(np.uint8)


@pytest.mark.parametrize(("fmt", "suffix", "tolerance"), [
    ("JPEG", ".jpg", 3), ("PNG", ".png", 0), ("WEBP", ".webp", 4), ("BMP", ".bmp", 0), ("TIFF", ".tif", 0),
    ("HEIF", ".heic", 4), ("AVIF", ".avif", 4),
])
def test_each_format_decodes_to_its_picture(tmp_path, fmt, suffix, tolerance):
    source = Image.fromarray(picture())
    path = tmp_path / f"photo{suffix}"
    source.save(path, fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP", "HEIF", "AVIF") else {}))
    loaded = load_image(path)
    assert (loaded.format, loaded.width, loaded.height, loaded.image.size) == (fmt, 200, 150, (200, 150))
    assert mean_diff(loaded.image, source) <= tolerance


def test_gif_and_multi_page_tiff_give_the_first_frame(tmp_path):
    first, second = Image.fromarray(picture()), Image.fromarray(np.flipud(picture()))
    first.save(tmp_path / "pages.tif", save_all=True, append_images=[second])
    assert mean_diff(load_image(tmp_path / "pages.tif").image, first) == 0
    first.convert("P").save(tmp_path / "anim.gif", save_all=True, append_images=[second.convert("P")])
    assert mean_diff(load_image(tmp_path / "anim.gif").image, first.convert("P").convert("RGB")) == 0


def test_mpo_gives_the_first_frame_with_draft(tmp_path):
    left, right = Image.fromarray(picture(800, 600)), Image.fromarray(np.roll(picture(800, 600), 40, axis=1))
    left.save(tmp_path / "stereo.mpo", "MPO", save_all=True, append_images=[right], quality=95)
    loaded = load_image(tmp_path / "stereo.mpo")
    assert (loaded.format, loaded.image.size) == ("MPO", (800, 600))
    assert mean_diff(loaded.image, left) < mean_diff(loaded.image, right) and mean_diff(loaded.image, left) < 3
    drafted = load_image(tmp_path / "stereo.mpo", draft=(224, 224))
    assert (drafted.width, drafted.height) == (800, 600) and 224 <= min(drafted.image.size) < 600


def test_heif_and_avif_orientation(tmp_path):
    for fmt in ("HEIF", "AVIF"):
        image = Image.fromarray(picture(300, 200))
        exif = image.getexif()
        exif[0x0112] = 6  # shown rotated 90 degrees clockwise
        image.save(tmp_path / f"rotated.{fmt}", fmt, quality=90, exif=exif.tobytes())
        loaded = load_image(tmp_path / f"rotated.{fmt}")
        assert loaded.image.size == (200, 300) and (loaded.width, loaded.height) == (200, 300), fmt
        assert mean_diff(loaded.image, image.transpose(Image.Transpose.ROTATE_270)) < 5, fmt


def correlated(a, b) -> bool:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return all(np.corrcoef(a[..., c].ravel(), b[..., c].ravel())[0, 1] > 0.8 for c in range(3))


def test_dng_without_a_preview_is_demosaiced_at_half_size(tmp_path):
    (tmp_path / "raw.dng").write_bytes(dng_bytes(picture(400, 300)))
    loaded = load_image(tmp_path / "raw.dng")
    assert (loaded.format, loaded.width, loaded.height, loaded.image.size) == ("DNG", 400, 300, (200, 150))
    assert correlated(loaded.image, picture())


def test_a_large_enough_raw_preview_is_used_and_oriented(tmp_path):
    sensor, preview = picture(400, 300), np.fliplr(picture(320, 240))  # told apart by the mirror image
    (tmp_path / "p.dng").write_bytes(dng_bytes(sensor, preview=preview, orientation=6))
    loaded = load_image(tmp_path / "p.dng", draft=(224, 224))
    assert (loaded.width, loaded.height) == (300, 400)
    assert loaded.image.size == (240, 320)
    assert mean_diff(loaded.image, Image.fromarray(preview).transpose(Image.Transpose.ROTATE_270)) < 3
    (tmp_path / "small.dng").write_bytes(dng_bytes(sensor, preview=preview[:120, :160]))  # below 224: demosaic
    small = load_image(tmp_path / "small.dng", draft=(224, 224))
    assert small.image.size == (200, 150) and correlated(small.image, picture())


def test_raw_by_content_and_raw_names_without_raw_content(tmp_path):
    loaded = load_image(dng_bytes(picture(400, 300)))  # no name: a TIFF that Pillow cannot read, LibRaw can
    assert (loaded.format, loaded.width) == ("RAW", 400)
    (tmp_path / "notes.nef").write_text("not a raw file at all")
    with pytest.raises(ImageError, match="^NEF: not a camera RAW file"):
        load_image(tmp_path / "notes.nef")
    (tmp_path / "cut.dng").write_bytes(dng_bytes(picture(400, 300))[:3000])  # the sensor data is missing
    with pytest.raises(ImageError, match="^DNG: .*cut short"):
        load_image(tmp_path / "cut.dng")
    Image.fromarray(picture()).save(tmp_path / "really-a-jpeg.nef", "JPEG")  # content wins over the name
    assert load_image(tmp_path / "really-a-jpeg.nef").format == "JPEG"


# --- what viewers show, we index -----------------------------------------------------------------------------


@pytest.mark.parametrize("progressive", [False, True])
def test_a_jpeg_missing_only_its_end_marker_is_decoded_with_a_warning(progressive):
    data = jpeg_bytes(picture(640, 480), quality=90, progressive=progressive)
    assert data.endswith(b"\xff\xd9")
    whole = load_image(data)
    loaded = load_image(data[:-2], draft=(224, 224))
    assert loaded.warnings in ((), ("JPEG: end marker missing; decoded anyway",))  # () when Pillow needs no EOI
    assert mean_diff(loaded.image, load_image(data, draft=(224, 224)).image) == 0
    assert mean_diff(load_image(data[:-2]).image, whole.image) == 0


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("kept", [0.1, 0.4, 0.56, 0.7, 0.95, 0.999])
def test_a_jpeg_really_cut_short_stays_an_error(progressive, kept):
    data = jpeg_bytes(picture(333, 211), quality=90, progressive=progressive)
    with pytest.raises(ImageError, match="^JPEG: .*[Tt]runcated"):
        load_image(data[: int(len(data) * kept)])


def png_chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_with(chunk: bytes) -> bytes:
    """A PNG of picture() with `chunk` inserted right after IHDR (8-byte signature + 25-byte IHDR)."""
    out = io.BytesIO()
    Image.fromarray(picture()).save(out, "PNG")
    return out.getvalue()[:33] + chunk + out.getvalue()[33:]


@pytest.mark.parametrize(("chunk", "warning"), [
    (png_chunk(b"tEXt", b"Comment\0hello", crc=1), "PNG: damaged metadata chunk tEXt (bad checksum) ignored"),
    (png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0<x/>", crc=2), "PNG: damaged metadata chunk iTXt"),
    (png_chunk(b"eXIf", b"MM\0*\0\0\0\x08\0\0", crc=3), "PNG: damaged metadata chunk eXIf"),
    (png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"a" * 2 * 2**20)), "PNG: oversized text chunk zTXt"),
])
def test_a_png_with_damaged_or_oversized_metadata_is_decoded_with_a_warning(chunk, warning):
    loaded = load_image(png_with(chunk))
    assert mean_diff(loaded.image, picture()) == 0
    assert len(loaded.warnings) == 1 and loaded.warnings[0].startswith(warning)


def test_png_problems_name_the_format_and_the_problem():
    data = png_with(b"")
    with pytest.raises(ImageError, match="^PNG: .*truncated"):
        load_image(data[: len(data) * 4 // 10])
    broken = data[:29] + b"\0\0\0\0" + data[33:]  # the header's checksum: a critical chunk, not tolerated
    with pytest.raises(ImageError, match=r"^PNG: broken PNG file \(bad header checksum in b'IHDR'\)$"):
        load_image(broken)


# --- colour ----------------------------------------------------------------------------------------------


def test_an_embedded_wide_gamut_profile_is_converted_to_srgb(tmp_path):
    srgb = Image.fromarray(picture())
    profile = rgb_profile()  # ProPhoto primaries, gamma 1.8
    wide = ImageCms.profileToProfile(srgb, ImageCms.createProfile("sRGB"),
                                     ImageCms.ImageCmsProfile(io.BytesIO(profile)), outputMode="RGB")
    assert mean_diff(wide, srgb) > 15  # read as sRGB, these pixels would be far off (dull)
    wide.save(tmp_path / "wide.jpg", "JPEG", quality=95, icc_profile=profile)
    wide.save(tmp_path / "wide.png", "PNG", icc_profile=profile)
    assert mean_diff(load_image(tmp_path / "wide.png").image, srgb) < 1.5
    assert mean_diff(load_image(tmp_path / "wide.jpg").image, srgb) < 3
    assert mean_diff(load_image(tmp_path / "wide.jpg", draft=(100, 75)).image, srgb.reduce(2)) < 3


def test_no_profile_is_left_as_is_and_a_broken_one_is_a_warning(tmp_path):
    source = Image.fromarray(picture())
    source.save(tmp_path / "plain.png")
    assert mean_diff(load_image(tmp_path / "plain.png").image, source) == 0
    source.save(tmp_path / "broken.jpg", "JPEG", quality=95, icc_profile=b"not a profile" * 20)
    loaded = load_image(tmp_path / "broken.jpg")
    assert mean_diff(loaded.image, source) < 3
    assert loaded.warnings and loaded.warnings[0].startswith("colour profile not applied")


# --- failures and warnings -----------------------------------------------------------------------------------


def test_any_exception_from_a_decoder_becomes_the_files_reason(monkeypatch):
    def broken_open(*args, **kwargs):
        raise RuntimeError("something a plugin never documented")

    monkeypatch.setattr(Image, "open", broken_open)
    with pytest.raises(ImageError, match="^PNG: something a plugin never documented$"):
        load_image(png_with(b""))


def test_decoder_warnings_are_returned_not_printed():
    image = Image.fromarray(picture())
    exif = image.getexif()
    exif[0x010E] = "a description long enough to be stored outside the IFD entry"
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes()[:-20])  # EXIF cut short: Pillow warns while reading it
    with warnings.catch_warnings(record=True) as printed:
        warnings.simplefilter("always")
        loaded = load_image(out.getvalue())
    assert loaded.warnings == ("Truncated File Read",)
    assert printed == []


def test_sixteen_bit_is_scaled_without_a_float64_copy(tmp_path):
    values = (np.arange(3000 * 4000, dtype=np.uint32).reshape(3000, 4000) % 65536).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "gray16.tif")
    tracemalloc.start()
    try:
        loaded = load_image(tmp_path / "gray16.tif")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert loaded.image.size == (4000, 3000)
    assert peak < 60 * 2**20  # the 16-bit array (24 MB) and the 8-bit one (12 MB); float64 alone is 96 MB


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "I;16"])
def test_reducing_in_bands_equals_reducing_the_whole_image(tmp_path, mode):
    source = Image.fromarray(picture(1000, 700))
    if mode == "RGBA":
        source.putalpha(255)
    elif mode == "P":
        source = source.convert("P")
    elif mode == "I;16":
        source = Image.fromarray(np.asarray(source.convert("L"), dtype=np.uint16) * 257)
    source.save(tmp_path / "big.png")
    loaded = load_image(tmp_path / "big.png", draft=(100, 100))
    expected = load_image(tmp_path / "big.png").image.reduce(7)  # 700 // 100: bands of 252 rows, then a partial one
    assert loaded.image.size == expected.size == (143, 100)
    assert mean_diff(loaded.image, expected) == 0


def test_warnings_stay_with_their_own_decode_across_threads():
    image = Image.fromarray(picture())
    exif = image.getexif()
    exif[0x010E] = "a description long enough to be stored outside the IFD entry"
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes()[:-20])
    noisy, clean = out.getvalue(), jpeg_bytes(picture())
    with warnings.catch_warnings(record=True) as printed, ThreadPoolExecutor(4) as pool:
        warnings.simplefilter("always")
        results = list(pool.map(load_image, [noisy, clean] * 20))
    assert [r.warnings for r in results] == [("Truncated File Read",), ()] * 20
    assert printed == []
