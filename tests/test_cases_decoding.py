"""Cases 04, 07 and 09 of ../shared/cases (real-collection faults), and other inputs of the same kinds made here."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from core.decode import Decoded, DecodePool, decode_file
from core.formats import IMAGE_EXTENSIONS, sniff
from core.images import ImageError, load_image
from core.thumbnails import ThumbnailCache
from tests.corpus import jpeg_bytes
from tests.icc import rgb_profile

CASES = Path(__file__).resolve().parents[2] / "shared" / "cases"


def case_input(name: str, tmp_path: Path) -> Path:
    folder = CASES / name / "input"
    if not folder.is_dir():
        pytest.skip(f"case {name} not found at {folder} (the shared cases sit beside the checkout)")
    shutil.copytree(folder, tmp_path / name)
    return tmp_path / name


def photo(width: int = 480, height: int = 320) -> np.ndarray:
    """A photo-like picture: smooth shading plus texture, saturated colours."""
    y, x = np.mgrid[0:height, 0:width] / np.array([[[height]], [[width]]])
    texture = np.sin(x * 40) * np.cos(y * 25) * 40
    rgb = np.stack([200 * x + texture, 180 * (1 - y) + texture, 120 + 100 * np.sin(6 * x * y) - texture], -1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def mean_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


def saturation(image: Image.Image) -> float:
    return float(np.asarray(image.convert("RGB").convert("HSV"))[..., 1].mean())


# --- 04: a JPEG missing only its end marker --------------------------------------------------------------


def test_case_04_jpeg_missing_eoi(tmp_path):
    folder = case_input("04-jpeg-missing-eoi", tmp_path)
    complete, no_eoi = decode_file(str(folder / "complete.jpg")), decode_file(str(folder / "no_eoi.jpg"))
    assert no_eoi.warnings == ("JPEG: end marker missing; decoded anyway",)
    assert (no_eoi.width, no_eoi.height) == (320, 200)
    assert np.array_equal(no_eoi.pixels, complete.pixels)  # same network input: similarity 1.0


@pytest.mark.parametrize("progressive", [False, True])
def test_other_jpegs_without_their_end_marker_and_cut_ones(tmp_path, progressive):
    data = jpeg_bytes(photo(), quality=88, progressive=progressive, subsampling=0)
    (tmp_path / "whole.jpg").write_bytes(data)
    (tmp_path / "no-eoi.jpg").write_bytes(data[:-2])
    (tmp_path / "cut-40.jpg").write_bytes(data[: len(data) * 4 // 10])  # badinputs-style: stays a skip
    with DecodePool(workers=1) as pool:
        outcomes = dict(pool.imap([str(tmp_path / n) for n in ("whole.jpg", "no-eoi.jpg", "cut-40.jpg")]))
    whole, no_eoi, cut = (outcomes[str(tmp_path / n)] for n in ("whole.jpg", "no-eoi.jpg", "cut-40.jpg"))
    assert isinstance(no_eoi, Decoded) and np.array_equal(no_eoi.pixels, whole.pixels)
    assert isinstance(cut, ImageError) and cut.reason.startswith("JPEG: ") and "truncated" in cut.reason


# --- 07: a wide-gamut photo with its ICC profile ---------------------------------------------------------


def test_case_07_icc_wide_gamut(tmp_path):
    folder = case_input("07-icc-wide-gamut", tmp_path)
    reference = Image.open(folder / "cups_srgb.jpg").convert("RGB")
    decoded = load_image(folder / "cups_widegamut.jpg").image
    assert mean_diff(decoded, reference) < 3.0  # was 5.7 without colour management (CASE.md)
    thumbnail = Image.open(ThumbnailCache(tmp_path / "thumbs", 160).path("x", 1, str(folder / "cups_widegamut.jpg")))
    assert abs(saturation(thumbnail) - saturation(reference)) < 5.0  # was 96.3 against 120.6
    pixels = decode_file(str(folder / "cups_widegamut.jpg")).pixels, decode_file(str(folder / "cups_srgb.jpg")).pixels
    assert mean_diff(*pixels) < 3.0


@pytest.mark.parametrize("profile_from", ["case", "prophoto"])
def test_other_photos_in_wide_gamut_spaces(tmp_path, profile_from):
    if profile_from == "case":
        icc_file = CASES / "07-icc-wide-gamut" / "widegamut_test.icc"
        if not icc_file.is_file():
            pytest.skip(f"case 07's profile not found at {icc_file}")
        profile = icc_file.read_bytes()
    else:
        profile = rgb_profile()
    srgb = Image.fromarray(photo())
    wide = ImageCms.profileToProfile(srgb, ImageCms.createProfile("sRGB"),
                                     ImageCms.ImageCmsProfile(io.BytesIO(profile)), outputMode="RGB")
    wide.save(tmp_path / "wide.jpg", "JPEG", quality=95, icc_profile=profile)
    assert saturation(wide) < saturation(srgb) - 10  # what a viewer without colour management shows
    decoded = load_image(tmp_path / "wide.jpg").image
    assert mean_diff(decoded, srgb) < 3.0 and abs(saturation(decoded) - saturation(srgb)) < 5.0
    thumbnail = Image.open(ThumbnailCache(tmp_path / "thumbs", 160).path("w", 1, str(tmp_path / "wide.jpg")))
    assert abs(saturation(thumbnail) - saturation(srgb)) < 5.0


# --- 09: MPO stereo files ---------------------------------------------------------------------------------


def test_case_09_mpo_stereo(tmp_path):
    folder = case_input("09-mpo-stereo", tmp_path)
    mpo, jpg = folder / "DSCF0001.MPO", folder / "DSCF0002.JPG"
    assert mpo.suffix.lower() in IMAGE_EXTENSIONS and sniff(mpo.read_bytes()[:64]) == "JPEG"
    with DecodePool(workers=1) as pool:
        outcomes = dict(pool.imap([str(mpo), str(jpg)]))
    first, second = outcomes[str(mpo)], outcomes[str(jpg)]
    assert isinstance(first, Decoded) and (first.format, first.width, first.height) == ("MPO", 320, 200)
    assert isinstance(second, Decoded) and np.array_equal(first.pixels, second.pixels)


def test_other_mpo_files_give_their_first_frame(tmp_path):
    left = Image.fromarray(photo(640, 400))
    right = Image.fromarray(np.roll(photo(640, 400), 12, axis=1))
    for name in ("stereo.mpo", "STEREO.MPO", "phone-named.jpg"):
        left.save(tmp_path / name, "MPO", save_all=True, append_images=[right], quality=95)
    assert {".mpo"} <= IMAGE_EXTENSIONS
    expected = decode_file(str(tmp_path / "stereo.mpo"))
    assert (expected.format, expected.width, expected.height) == ("MPO", 640, 400)
    assert mean_diff(load_image(tmp_path / "stereo.mpo").image, left) < 3
    with DecodePool(workers=1) as pool:
        for _, outcome in pool.imap([str(tmp_path / n) for n in ("stereo.mpo", "STEREO.MPO", "phone-named.jpg")]):
            assert isinstance(outcome, Decoded) and np.array_equal(outcome.pixels, expected.pixels)
