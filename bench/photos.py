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
