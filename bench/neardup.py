"""Near-duplicate retrieval: recall@1 and mAP per transform on real photos.

The index holds the original photos (scikit-image / scikit-learn samples); each transformed copy is a
query whose one relevant answer is its original. With `--weights random` (the default here, as these
machines cannot download ImageNet weights) the figures only check the pipeline; pass `--weights imagenet`
or a .h5 file for real quality numbers. Prints one JSON object.

    python bench/neardup.py [--weights random] [--descriptor gem|fc1|both] [--runtime R] [--precision P]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def center_crop(img: Image.Image, keep: float) -> Image.Image:
    w, h = img.size
    dw, dh = int(w * (1 - keep) / 2), int(h * (1 - keep) / 2)
    return img.crop((dw, dh, w - dw, h - dh))


TRANSFORMS = {
    "crop-70": lambda im: center_crop(im, 0.7),
    "rescale-0.5": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.BICUBIC),
    "jpeg-q10": lambda im: jpeg(im, 10),
    "flip": ImageOps.mirror,
    "blur-2": lambda im: im.filter(ImageFilter.GaussianBlur(2)),
    "border-10pct": lambda im: ImageOps.expand(im, border=im.width // 10, fill=(255, 255, 255)),
    "rotate-5": lambda im: im.rotate(5, resample=Image.Resampling.BICUBIC, expand=False),
    "grayscale": lambda im: ImageOps.grayscale(im).convert("RGB"),
}


def evaluate(descriptor: str, weights: str, extractor=None, transforms: dict | None = None) -> dict:
    """recall@1 and mAP per transform; `extractor` (a core.model.Extractor) defaults to the settings' own."""
    from bench.photos import photo_arrays
    from core.config import Settings
    from core.engine import Engine

    photos = photo_arrays()
    transforms = TRANSFORMS if transforms is None else transforms
    with tempfile.TemporaryDirectory() as tmp:
        originals = Path(tmp) / "originals"
        originals.mkdir()
        for name, pixels in photos.items():
            Image.fromarray(pixels).save(originals / f"{name}.png")
        settings = Settings(data_dir=str(Path(tmp) / "data"), weights=weights, descriptor=descriptor)
        engine = Engine(settings, extractor=extractor)
        engine.index([originals])
        per_transform = {}
        for transform_name, transform in transforms.items():
            ranks = []
            for name, pixels in photos.items():
                query = transform(Image.fromarray(pixels))
                out = io.BytesIO()
                query.save(out, "PNG")
                hits = engine.search(out.getvalue(), k=len(photos))
                names = [Path(h.record.path).stem for h in hits]
                ranks.append(names.index(name) + 1)
            ranks = np.array(ranks)
            per_transform[transform_name] = {
                "recall_at_1": round(float(np.mean(ranks == 1)), 3),
                "mAP": round(float(np.mean(1.0 / ranks)), 3),  # one relevant item: AP = 1 / rank
            }
        engine.close()
    return {
        "originals": len(photos),
        "per_transform": per_transform,
        "mean_recall_at_1": round(float(np.mean([v["recall_at_1"] for v in per_transform.values()])), 3),
        "mean_mAP": round(float(np.mean([v["mAP"] for v in per_transform.values()])), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="random")
    parser.add_argument("--descriptor", choices=["gem", "fc1", "both"], default="both")
    parser.add_argument("--runtime", default="auto", help="auto, onnxruntime, openvino, tensorflow or cuda")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16 or int8")
    args = parser.parse_args()
    from core.model import Extractor, resolve_weights

    descriptors = ["gem", "fc1"] if args.descriptor == "both" else [args.descriptor]
    results = {}
    for d in descriptors:
        extractor = Extractor(d, resolve_weights(args.weights, d), runtime=args.runtime, precision=args.precision)
        results[d] = {"extractor": extractor.describe(), **evaluate(d, args.weights, extractor)}
    print(json.dumps({"weights": args.weights, "pipeline_check_only": args.weights == "random", **results},
                     indent=1))


if __name__ == "__main__":
    main()
