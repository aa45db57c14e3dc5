"""The embedded index at scale: load, ingest and kNN latency with synthetic unit vectors.

Baseline in the same run: the original project's ranking rule done locally, i.e. cosine similarity
recomputed against every stored vector per query (norms included) and a full sort; for `knn_many` (all
queries in one call, as duplicates search), the same queries one `knn` call at a time. Prints one JSON
object; set OMP_NUM_THREADS to compare runs on a shared machine.

    python bench/embedded_index.py [--sizes 10000,100000] [--dims 512] [--queries 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.store import ImageRecord, ModelIdentity, SearchFilter  # noqa: E402
from core.store.embedded import EmbeddedStore  # noqa: E402


def unit_vectors(n: int, dims: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dims), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def percentile_ms(times: list[float], q: float) -> float:
    return round(float(np.percentile(times, q)) * 1000, 3)


def run(size: int, dims: int, queries: int) -> dict:
    vectors = unit_vectors(size, dims, 0)
    records = [ImageRecord(f"{i:016x}", (f"/photos/{i // 1000}/img{i}.jpg",), 1000, 1, 1, i, "h", 640, 480)
               for i in range(size)]
    result: dict = {"images": size, "dims": dims}
    with tempfile.TemporaryDirectory() as tmp:
        store = EmbeddedStore(tmp)
        store.initialize(ModelIdentity("gem", dims, "random-0"))
        t = time.perf_counter()
        for start in range(0, size, 1000):  # indexing commits in batches like this
            store.upsert(records[start : start + 1000], vectors[start : start + 1000])
        result["ingest_vectors_per_s"] = round(size / (time.perf_counter() - t))
        store.close()

        t = time.perf_counter()
        store = EmbeddedStore(tmp)
        store.count()
        store.knn(vectors[0], 1)  # the first search loads the matrix
        result["open_and_load_s"] = round(time.perf_counter() - t, 3)

        qs = unit_vectors(queries, dims, 1)
        ours, naive, filtered = [], [], []
        for q in qs:
            t = time.perf_counter()
            hits = store.knn(q, 10)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            matrix = store._cache.matrix  # the same in-memory data, ranked the original way
            scores = (matrix @ q) / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(q))
            top = np.argsort(-scores)[:10]
            naive.append(time.perf_counter() - t)
            assert [h.record.id for h in hits] == [store._cache.ids[i] for i in top]
            t = time.perf_counter()
            store.knn(q, 10, SearchFilter(text="img7", min_score=0.0))
            filtered.append(time.perf_counter() - t)
        # Batched kNN (what duplicates use) against the same queries one knn call at a time.
        t = time.perf_counter()
        many = store.knn_many(qs, 10)
        batched_s = time.perf_counter() - t
        assert [[h.record.id for h in hits] for hits in many] == [[h.record.id for h in store.knn(q, 10)] for q in qs]
        store.close()
    result.update({
        "knn_p50_ms": percentile_ms(ours, 50), "knn_p95_ms": percentile_ms(ours, 95),
        "knn_text_filter_p50_ms": percentile_ms(filtered, 50),
        "baseline_cosine_full_sort_p50_ms": percentile_ms(naive, 50),
        "speedup_vs_baseline": round(statistics.median(naive) / statistics.median(ours), 2),
        "knn_many_queries_per_s": round(queries / batched_s),
        "knn_one_at_a_time_queries_per_s": round(queries / sum(ours)),
        "knn_many_speedup": round(sum(ours) / batched_s, 2),
    })
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dims", type=int, default=512)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    results = [run(int(size), args.dims, args.queries) for size in args.sizes.split(",")]
    print(json.dumps({"backend": "embedded", "results": results}, indent=1))


if __name__ == "__main__":
    main()
