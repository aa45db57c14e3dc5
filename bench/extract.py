"""Feature-extraction throughput: every runtime x precision this machine offers vs the original per-image pattern.

Prints one JSON object. Every figure is measured in this run on the same photos (real photos bundled with
scikit-image / scikit-learn, written in several sizes). TensorFlow settings (oneDNN, threads) must be
chosen before TensorFlow is imported, so each configuration runs in its own subprocess; they are screened on
TensorFlow's own gem forward speed.

`paths` (gem descriptor, random weights): per runtime-precision, forward images/s (median over the batches
of 16 of the photo set, after a warm-up), end-to-end images/s through Engine.index (median over --repeats; the
paths take turns in every repeat, so a change in the machine's load falls on all alike), that as a fraction of
the best forward rate and of the path's own, agreement with ONNX Runtime fp32 (min/mean cosine over the
photo set), build seconds (int8: includes quantizing once, into a fresh cache), and hours for 100,000 photos
at the end-to-end rate. `auto` is what Extractor(runtime="auto", precision="auto") chose here, and why.

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
PATHS = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "bf16"),
         ("openvino", "int8"), ("tensorflow", "fp32"), ("tensorflow", "bf16"), ("cuda", "fp32")]


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

    from bench.photos import photo_arrays

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


def available_paths() -> list[tuple[str, str]]:
    """The PATHS whose runtime is installed and whose precision this CPU (or GPU) has instructions for."""
    import importlib.util

    from core.runtime import this_cpu

    cpu = this_cpu()
    found = []
    for runtime, precision in PATHS:
        if runtime == "cuda":
            import onnxruntime

            if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
                found.append((runtime, precision))
        elif importlib.util.find_spec(runtime) and (
                precision == "fp32" or precision == "bf16" and cpu.has_bf16 or precision == "int8" and cpu.has_vnni):
            found.append((runtime, precision))
    return found


def forward_rate(extractor, pixels: np.ndarray) -> dict:
    """Forward rate (median over batches of 16, after a warm-up) and the vectors of `pixels`."""
    extractor.embed(pixels[:2])  # warm up
    rates, vectors = [], []
    for start in range(0, len(pixels), 16):
        batch = pixels[start : start + 16]
        t = time.perf_counter()
        vectors.append(extractor.embed(batch))
        rates.append(len(batch) / (time.perf_counter() - t))
    return {"forward_img_s": round(statistics.median(rates), 3), "vectors": np.concatenate(vectors)}


def pipeline_rate(extractor, images: list[Path], descriptor: str) -> float:
    """End-to-end images/s of one Engine.index run of `images` into a fresh embedded index."""
    from core.config import Settings
    from core.engine import Engine

    with tempfile.TemporaryDirectory() as data:
        engine = Engine(Settings(data_dir=data, weights="random", descriptor=descriptor), extractor=extractor)
        t = time.perf_counter()
        report = engine.index(images)
        rate = report.indexed / (time.perf_counter() - t)
        engine.close()
    return rate


def interleaved_pipelines(extractors: dict, images: list[Path], repeats: int, descriptor: str) -> dict:
    """Per extractor, the median end-to-end rate and each run's; the extractors take turns in every repeat
    so that a change in the machine's load falls on all of them alike (same-run ratios)."""
    runs: dict = {name: [] for name in extractors}
    for _ in range(repeats):
        for name, extractor in extractors.items():
            runs[name].append(round(pipeline_rate(extractor, images, descriptor), 3))
    return {name: {"pipeline_img_s": round(statistics.median(r), 3), "pipeline_runs": r} for name, r in runs.items()}


def worker(images: list[Path], repeats: int, forward_only: bool) -> dict:
    """Runs inside a subprocess with the configuration's environment."""
    import tensorflow as tf

    if os.environ.get("BENCH_INTRA"):
        tf.config.threading.set_intra_op_parallelism_threads(int(os.environ["BENCH_INTRA"]))
        tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["BENCH_INTER"]))
    from core.images import load_image
    from core.model import INPUT_SIZE, Extractor, resolve_weights, to_model_pixels
    from core.runtime import this_cpu

    batch = np.random.default_rng(0).integers(0, 256, (16, 224, 224, 3), dtype=np.uint8)
    if forward_only:
        extractor = Extractor("gem", resolve_weights("random", "gem"), runtime="tensorflow", precision="fp32")
        extractor.embed(batch)  # warm up
        t = time.perf_counter()
        extractor.embed(batch)
        return {"tensorflow_gem_forward_img_s": round(16 / (time.perf_counter() - t), 3)}
    pixels = np.stack([to_model_pixels(load_image(p, draft=INPUT_SIZE).image) for p in images])
    vector_flags = sorted(f for f in this_cpu().flags if f.startswith(("avx", "amx", "fma", "f16c")))
    result: dict = {"cpu": this_cpu().label(), "cpu_flags": vector_flags, "load_at_start": os.getloadavg()}
    paths: dict = {}
    extractors: dict = {}
    reference = None
    for runtime, precision in available_paths():
        t = time.perf_counter()
        extractor = Extractor("gem", resolve_weights("random", "gem"), batch_size=16, runtime=runtime,
                              precision=precision)
        built_s = time.perf_counter() - t
        measured = forward_rate(extractor, pixels)
        vectors = measured.pop("vectors")
        if (runtime, precision) == ("onnxruntime", "fp32"):
            reference = vectors
        cosines = np.sum(vectors * reference, axis=1)
        name = f"{runtime}-{precision}"
        extractors[name] = extractor
        agreement = {"min": round(float(cosines.min()), 6), "mean": round(float(cosines.mean()), 6)}
        paths[name] = {**measured, "runs_as": extractor.describe(), "build_s": round(built_s, 1),
                       "cosine_to_fp32": agreement}
    for name, measured in interleaved_pipelines(extractors, images, repeats, "gem").items():
        paths[name] |= {**measured, "hours_for_100k": round(100_000 / measured["pipeline_img_s"] / 3600, 2)}
    best_forward = max(p["forward_img_s"] for p in paths.values())
    for p in paths.values():
        p["pipeline_fraction_of_best_forward"] = round(p["pipeline_img_s"] / best_forward, 3)
        p["pipeline_fraction_of_own_forward"] = round(p["pipeline_img_s"] / p["forward_img_s"], 3)
        p["pipeline_vs_onnxruntime_fp32"] = round(p["pipeline_img_s"] / paths["onnxruntime-fp32"]["pipeline_img_s"], 2)
    result["paths"] = paths
    t = time.perf_counter()
    auto = Extractor("gem", resolve_weights("random", "gem"))
    result["auto"] = {**auto.describe(), "build_s": round(time.perf_counter() - t, 1)}
    # Today's keys: gem from the paths above, fc1 measured the same way.
    fc1 = {runtime: Extractor("fc1", resolve_weights("random", "fc1"), batch_size=16, runtime=runtime, precision="fp32")
           for runtime in ("onnxruntime", "tensorflow")}
    fc1_pipelines = interleaved_pipelines(fc1, images, repeats, "fc1")
    for runtime in ("onnxruntime", "tensorflow"):
        gem = paths[f"{runtime}-fp32"]
        result[f"{runtime}_gem_forward_img_s"] = gem["forward_img_s"]
        result[f"{runtime}_gem_pipeline_img_s"] = gem["pipeline_img_s"]
        result[f"{runtime}_gem_pipeline_runs"] = gem["pipeline_runs"]
        result[f"{runtime}_fc1_forward_img_s"] = forward_rate(fc1[runtime], pixels)["forward_img_s"]
        result[f"{runtime}_fc1_pipeline_img_s"] = fc1_pipelines[runtime]["pipeline_img_s"]
        result[f"{runtime}_fc1_pipeline_runs"] = fc1_pipelines[runtime]["pipeline_runs"]
    result["original_pattern_img_s"] = round(original_pattern(images, repeats), 3)
    import keras

    full = keras.applications.VGG16(weights=None)
    result["gflop_per_image"] = round(vgg16_gflop(keras.Model(full.input, full.get_layer("fc1").output)), 2)
    result["load_at_end"] = os.getloadavg()
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
            # A fresh per-machine cache: int8 quantization and auto's measurement happen (and are timed) here.
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "IMAGE_SEARCH_CACHE_DIR": str(Path(tmp) / "cache"),
                   **CONFIGS[config]}
            cmd = [sys.executable, __file__, "--worker", str(folder), "--repeats", str(args.repeats)]
            out = subprocess.run(cmd + (["--forward-only"] if forward_only else []), env=env, check=True,
                                 capture_output=True, text=True)
            return json.loads(out.stdout.strip().splitlines()[-1])

        load_before = os.getloadavg()
        gflops_before = gemm_gflops()
        # TensorFlow settings are screened on its own forward speed; ONNX Runtime keeps its defaults.
        screening = {config: run(config, forward_only=True) for config in CONFIGS}
        best = max(screening, key=lambda c: screening[c]["tensorflow_gem_forward_img_s"])
        full = run(best, forward_only=False)
        gflops = statistics.median([gflops_before, gemm_gflops()])
    flop = full["gflop_per_image"]
    base = full["original_pattern_img_s"]
    pipelines = {k.removesuffix("_pipeline_img_s"): v for k, v in full.items() if k.endswith("_pipeline_img_s")}
    pipelines |= {name: p["pipeline_img_s"] for name, p in full["paths"].items()}
    best_path = max(full["paths"], key=lambda name: full["paths"][name]["pipeline_img_s"])
    print(json.dumps({
        "images": args.images, "sizes": SIZES, "repeats": args.repeats, "weights": "random",
        "load_before": load_before, "load_after": os.getloadavg(),
        "numpy_fp32_gemm_gflops": round(gflops, 1),
        "fp32_ceiling_img_s": round(gflops / flop, 2),
        "config_screening_forward_batch16": screening,
        "chosen_config": best,
        **full,
        "speedup_vs_original": {k: round(v / base, 2) for k, v in pipelines.items()},
        "fraction_of_gemm_peak": {k: round(v * flop / gflops, 3) for k, v in pipelines.items()},
        "best_path": best_path,
        "hours_for_100k": {"best_path": full["paths"][best_path]["hours_for_100k"],
                           "onnxruntime-fp32": full["paths"]["onnxruntime-fp32"]["hours_for_100k"],
                           "original_pattern": round(100_000 / base / 3600, 2)},
    }, indent=1))


if __name__ == "__main__":
    main()
