"""Safe image loading: every awkward file becomes RGB or a clear ImageError."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.images import ImageError, load_image
from tests.corpus import EXPECTED, build_corpus, gradient, jpeg_bytes


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
