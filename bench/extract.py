"""Feature-extraction throughput: this pipeline vs the original project's per-image pattern.

Prints one JSON object. Every figure is measured in this run on the same photos (real photos bundled with
scikit-image / scikit-learn, written in several sizes). TensorFlow settings (oneDNN, threads) must be
chosen before TensorFlow is imported, so each configuration runs in its own subprocess.

    python bench/extract.py [--images 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = {  # name -> environment for the worker
    "onednn-on": {"TF_ENABLE_ONEDNN_OPTS": "1"},
    "onednn-off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "onednn-on-intra2-inter1": {"TF_ENABLE_ONEDNN_OPTS": "1", "BENCH_INTRA": "2", "BENCH_INTER": "1"},
    "onednn-off-intra2-inter1": {"TF_ENABLE_ONEDNN_OPTS": "0", "BENCH_INTRA": "2", "BENCH_INTER": "1"},
}
SIZES = [(640, 480), (1600, 1200), (3000, 2000), (300, 200)]  # photos are resized to these (w, h)


def gemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    a @ a
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def write_image_set(folder: Path, count: int) -> list[Path]:
    from PIL import Image

    from tests.photos import photo_arrays

    photos = list(photo_arrays().items())
    paths = []
    for n in range(count):
        name, pixels = photos[n % len(photos)]
        size = SIZES[(n // len(photos)) % len(SIZES)]
        path = folder / f"{n:03d}-{name}-{size[0]}x{size[1]}.jpg"
        Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths


def vgg16_gflop(model) -> float:
    """Multiply-adds x 2 of the conv and dense layers up to the model's output."""
    flop = 0
    for layer in model.layers:
        if hasattr(layer, "kernel"):
            out = layer.output.shape
            spatial = out[1] * out[2] if len(out) == 4 else 1
            flop += 2 * spatial * int(np.prod(layer.kernel.shape))
    return flop / 1e9


def worker(images: list[Path], repeats: int, forward_only: bool) -> dict:
    """Runs inside a subprocess with the configuration's environment."""
    import tensorflow as tf

    if os.environ.get("BENCH_INTRA"):
        tf.config.threading.set_intra_op_parallelism_threads(int(os.environ["BENCH_INTRA"]))
        tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["BENCH_INTER"]))
    from core.config import Settings
    from core.engine import Engine
    from core.model import Extractor, resolve_weights

    result: dict = {}
    for runtime in ("onnxruntime", "tensorflow"):
        for descriptor in ("gem", "fc1"):
            key = f"{runtime}_{descriptor}"
            extractor = Extractor(descriptor, resolve_weights("random", descriptor), batch_size=16, runtime=runtime)
            batch = np.random.default_rng(0).integers(0, 256, (16, 224, 224, 3), dtype=np.uint8)
            extractor.embed(batch)  # warm up
            t = time.perf_counter()
            extractor.embed(batch)
            result[f"{key}_forward_img_s"] = round(16 / (time.perf_counter() - t), 3)
            if forward_only:
                continue
            rates = []
            for _ in range(repeats):
                with tempfile.TemporaryDirectory() as data:
                    settings = Settings(data_dir=data, weights="random", descriptor=descriptor)
                    engine = Engine(settings, extractor=extractor)
                    t = time.perf_counter()
                    report = engine.index(images)
                    rates.append(report.indexed / (time.perf_counter() - t))
                    engine.close()
            result[f"{key}_pipeline_img_s"] = round(statistics.median(rates), 3)
            result[f"{key}_pipeline_runs"] = [round(r, 3) for r in rates]
    if not forward_only:
        result["original_pattern_img_s"] = round(original_pattern(images, repeats), 3)
        import keras

        full = keras.applications.VGG16(weights=None)
        result["gflop_per_image"] = round(vgg16_gflop(keras.Model(full.input, full.get_layer("fc1").output)), 2)
    return result


def original_pattern(images: list[Path], repeats: int) -> float:
    """The original project: per image, PIL load + resize, Keras preprocess, model.predict on a batch of one."""
    import keras
    from keras.applications.vgg16 import preprocess_input
    from PIL import Image

    from core.model import random_weights

    base = keras.applications.VGG16(weights=None)
    for name, params in random_weights(0, "fc1").items():
        base.get_layer(name).set_weights(list(params))
    model = keras.Model(base.input, base.get_layer("fc1").output)
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for path in images:
            img = Image.open(path).convert("RGB").resize((224, 224))
            x = preprocess_input(np.expand_dims(np.asarray(img, dtype=np.float32), 0))
            feature = model.predict(x, verbose=0)[0]
            feature / np.linalg.norm(feature)
        rates.append(len(images) / (time.perf_counter() - t))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--forward-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.worker or tmp)
        if args.worker:
            print(json.dumps(worker(sorted(folder.glob("*.jpg")), args.repeats, args.forward_only)))
            return
        write_image_set(folder, args.images)

        def run(config: str, forward_only: bool) -> dict:
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **CONFIGS[config]}
            cmd = [sys.executable, __file__, "--worker", str(folder), "--repeats", str(args.repeats)]
            out = subprocess.run(cmd + (["--forward-only"] if forward_only else []), env=env, check=True,
                                 capture_output=True, text=True)
            return json.loads(out.stdout.strip().splitlines()[-1])

        gflops_before = gemm_gflops()
        # TensorFlow settings are screened on its own forward speed; ONNX Runtime keeps its defaults.
        screening = {config: run(config, forward_only=True) for config in CONFIGS}
        best = max(screening, key=lambda c: screening[c]["tensorflow_gem_forward_img_s"])
        full = run(best, forward_only=False)
        gflops = statistics.median([gflops_before, gemm_gflops()])
    flop = full["gflop_per_image"]
    base = full["original_pattern_img_s"]
    pipelines = {k.removesuffix("_pipeline_img_s"): v for k, v in full.items() if k.endswith("_pipeline_img_s")}
    print(json.dumps({
        "images": args.images, "sizes": SIZES, "repeats": args.repeats, "weights": "random",
        "numpy_fp32_gemm_gflops": round(gflops, 1),
        "fp32_ceiling_img_s": round(gflops / flop, 2),
        "config_screening_forward_batch16": screening,
        "chosen_config": best,
        **full,
        "speedup_vs_original": {k: round(v / base, 2) for k, v in pipelines.items()},
        "fraction_of_gemm_peak": {k: round(v * flop / gflops, 3) for k, v in pipelines.items()},
    }, indent=1))


if __name__ == "__main__":
    main()
