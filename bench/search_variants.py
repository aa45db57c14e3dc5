"""The cost of query-time variants in search: Engine.search(image) against Engine.search(image, variants=True),
which embeds the query's mirror and 90/180/270-degree rotations beside it (one batch of 5) and runs 5 kNN
searches (core.duplicates.search_with_variants).

Same-run baseline: the plain search of the same query files, interleaved with the variant searches. The real
VGG16 graph with deterministic random weights (speed does not depend on the weights), on the runtime the
engine picks; the index is an EmbeddedStore of `--size` random 512-d unit vectors (its HNSW graph, as a user's
search uses). Queries: the bundled test photos (bench/photos.py) as JPEG files, decoded each time as a user's
query is. Prints one JSON object: medians in milliseconds and their ratio, the CPU named.

    python bench/search_variants.py [--size 20000] [--queries 6] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.photos import PHOTO_NAMES, write_photos
from core.config import Settings
from core.engine import Engine
from core.runtime import this_cpu
from core.store import ImageRecord


def run(size: int, queries: int, repeat: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Settings(data_dir=str(Path(tmp) / "data"), weights="random"))
        try:
            engine.store.initialize(engine.identity)
            rng = np.random.default_rng(0)
            for start in range(0, size, 5000):
                n = min(5000, size - start)
                vectors = rng.standard_normal((n, engine.identity.dims)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                ids = [f"{i:016x}" for i in range(start, start + n)]
                engine.store.upsert([ImageRecord(i, (f"/v/{i}.jpg",), 1, 1, 1, 1, i, 640, 480) for i in ids], vectors)
            engine.store.finish()
            files = write_photos(Path(tmp) / "q", PHOTO_NAMES[:queries])
            engine.search(files[0])  # build the model and warm the index before timing
            plain, variants = [], []
            for _ in range(repeat):
                for path in files:
                    for times, with_variants in ((plain, False), (variants, True)):
                        t = time.perf_counter()
                        engine.search(path, 10, variants=with_variants)
                        times.append((time.perf_counter() - t) * 1000)
            runtime = engine.info()["runtime"]
        finally:
            engine.close()
    plain_ms, variants_ms = statistics.median(plain), statistics.median(variants)
    return {"cpu": this_cpu().model, "cores": os.cpu_count(), "machine": platform.machine(), "runtime": runtime,
            "images": size, "queries": len(plain), "search_ms_p50": round(plain_ms, 1),
            "search_variants_ms_p50": round(variants_ms, 1), "variants_vs_plain": round(variants_ms / plain_ms, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000, help="indexed images (random vectors)")
    parser.add_argument("--queries", type=int, default=6, help="query photos")
    parser.add_argument("--repeat", type=int, default=3, help="searches of each photo, each way")
    args = parser.parse_args()
    print(json.dumps(run(args.size, args.queries, args.repeat), indent=1))


if __name__ == "__main__":
    main()
