"""Real photos bundled with scikit-image and scikit-learn, written as files for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PHOTO_NAMES = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
               "retina", "camera", "coins", "moon", "brick", "grass", "gravel", "clock", "colorwheel", "cell"]


def photo_arrays() -> dict[str, np.ndarray]:
    """name -> RGB uint8 array, for the 16 scikit-image photos and scikit-learn's two samples."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = {}
    for name in PHOTO_NAMES:
        pixels = np.asarray(getattr(skimage.data, name)())
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=-1)
        photos[name] = pixels[..., :3].astype(np.uint8)
    samples = load_sample_images()
    for path, pixels in zip(samples.filenames, samples.images, strict=True):
        photos[Path(path).stem] = pixels
    return photos


def write_photos(folder: Path, names: list[str] | None = None, fmt: str = "jpg") -> list[Path]:
    """Write the photos (or the named subset) into `folder` as files; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, pixels in photo_arrays().items():
        if names is None or name in names:
            path = folder / f"{name}.{fmt}"
            Image.fromarray(pixels).save(path, quality=92) if fmt == "jpg" else Image.fromarray(pixels).save(path)
            paths.append(path)
    return paths


MIXED_SIZES = [(800, 600), (2048, 1536), (3000, 2000), (4032, 3024), (6000, 4000)]  # (w, h): 0.5 to 24 MP
MIXED_FORMATS = {"jpg": "JPEG", "png": "PNG", "tif": "TIFF", "heic": "HEIF", "webp": "WEBP"}


def write_mixed(folder: Path, count: int, variants: int = 2) -> list[Path]:
    """`count` photo files of mixed sizes (MIXED_SIZES, up to 24 MP) and formats (MIXED_FORMATS; TIFF with
    LZW compression as cameras and scanners write it), cycling through every size x format.

    `variants` distinct photos are encoded per size x format; the other files are byte copies of these
    (separate files: the index treats them as separate images), which keeps writing 5,000 files quick.
    Sizes are resized from the bundled photos (bicubic), so the large ones are smooth and compress well."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    folder.mkdir(parents=True, exist_ok=True)
    photos = list(photo_arrays().values())
    combos = [(size, ext) for size in MIXED_SIZES for ext in MIXED_FORMATS]
    originals: list[Path] = []
    for n in range(min(count, len(combos) * variants)):
        (w, h), ext = combos[n % len(combos)]
        image = Image.fromarray(photos[n % len(photos)]).resize((w, h), Image.Resampling.BICUBIC)
        path = folder / f"{n:05d}-{w}x{h}.{ext}"
        options = {"compression": "tiff_lzw"} if ext == "tif" else {"quality": 90}
        image.save(path, MIXED_FORMATS[ext], **options)
        originals.append(path)
    paths = list(originals)
    for n in range(len(originals), count):
        source = originals[n % len(originals)]
        path = folder / f"{n:05d}-{source.name.split('-', 1)[1]}"
        path.write_bytes(source.read_bytes())
        paths.append(path)
    return paths
