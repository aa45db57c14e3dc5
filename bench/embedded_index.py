"""The embedded index at scale: ingest, open, kNN latency and recall@10, text-filtered kNN, memory.

Baseline in the same run: the exact scan (`SearchFilter(exact=True)`, today's search: every stored vector scored with
NumPy, then the top k), against which recall@10 of the default search (HNSW graph + float re-rank) is
counted; for `knn_many` (all queries in one call, as duplicates search), the same queries one `knn` call
at a time. Ingest counts the upserts in batches of 1,000 and the `finish()` that builds the graph.
Memory: peak RSS of this process (which also holds the generated vectors), and RssAnon (process memory,
not the pages of mapped index files) of a separate process that opens the index and runs 1,000 searches,
like `serve`. Prints one JSON object; set OMP_NUM_THREADS to compare runs on a shared machine.

`text_filters`: the same for text filters keeping from 4 % to all of the rows, each with its exact scan.

Vector sets (bench/ann.py): `clustered` (default; non-negative, clustered like GeM descriptors, queries
near database vectors: the app's queries) and `uniform` (random unit vectors, the worst case for ANN).

    python bench/embedded_index.py [--sizes 10000,100000] [--dims 512] [--queries 50] [--vectors clustered]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ann import clustered_set, cpu_name, uniform_set  # noqa: E402
from core.store import ImageRecord, ModelIdentity, SearchFilter  # noqa: E402
from core.store.embedded import EmbeddedStore  # noqa: E402

SERVE_SEARCHES = 1000
SERVE_SCRIPT = """
import sys, numpy as np
from pathlib import Path
from core.store import SearchFilter
from core.store.embedded import EmbeddedStore
import time
store = EmbeddedStore(sys.argv[1])
queries = np.load(sys.argv[2])
for n in range(int(sys.argv[3])):
    t = time.perf_counter()
    store.knn(queries[n % len(queries)], 10, SearchFilter(text="img7") if n % 10 == 0 else None)
    if n == 0:  # the first text filter of a process builds its word index
        print("FirstTextFilterMs", round((time.perf_counter() - t) * 1000))
for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith(("RssAnon:", "RssFile:")):
        print(line.split()[0][:-1], int(line.split()[1]) // 1024)
"""


# Text filters keeping different shares of the rows (paths /photos/<i // 1000>/img<i>.jpg, substring match): a few
# (exact scan of those rows), a middling share (8-bit codes), most rows (the graph); core/store/ann.py `plan`.
SWEEP_TEXTS = ("77", "img7", "7 5", "7", "jpg")


def filter_sweep(store: EmbeddedStore, qs: np.ndarray, text: str) -> dict:
    """kNN with one text filter: share of rows kept, p50 and recall@10 against the exact scan of the same run."""
    times, exact_times, recalls = [], [], []
    for q in qs:
        hits, s = timed(store.knn, q, 10, SearchFilter(text=text))
        times.append(s)
        want, s = timed(store.knn, q, 10, SearchFilter(text=text, exact=True))
        exact_times.append(s)
        recalls.append(len(set(ids(hits)) & set(ids(want))) / max(1, len(want)))
    mask = store._allowed(SearchFilter(text=text))
    return {"text": text, "share_of_rows": round(float(mask.mean()), 4), "knn_p50_ms": percentile_ms(times, 50),
            "recall_at_10": round(statistics.mean(recalls), 4), "min_recall_at_10": min(recalls),
            "baseline_exact_p50_ms": percentile_ms(exact_times, 50)}


def percentile_ms(times: list[float], q: float) -> float:
    return round(float(np.percentile(times, q)) * 1000, 3)


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - t


def ids(hits) -> list[str]:
    return [h.record.id for h in hits]


def run(size: int, dims: int, queries: int, vector_set: str) -> dict:
    vectors, qs = (clustered_set if vector_set == "clustered" else uniform_set)(size, dims, queries)
    result: dict = {"images": size, "dims": dims, "vectors": vector_set, "load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        store = EmbeddedStore(tmp)
        store.initialize(ModelIdentity("gem", dims, "random-0"))
        t = time.perf_counter()
        for start in range(0, size, 1000):  # indexing commits in batches like this, streaming
            records = [ImageRecord(f"{i:016x}", (f"/photos/{i // 1000}/img{i}.jpg",), 1000, 1, 1, i, "h", 640, 480)
                       for i in range(start, min(size, start + 1000))]
            store.upsert(records, vectors[start : start + 1000])
        upserts_s = time.perf_counter() - t
        cpu = time.process_time()
        _, graph_s = timed(store.finish)
        result.update({"ingest_vectors_per_s": round(size / (upserts_s + graph_s)),
                       "upsert_vectors_per_s": round(size / upserts_s), "graph_build_s": round(graph_s, 1),
                       # CPU seconds over wall seconds: ~2 when both cores build; less when the machine is shared
                       "graph_build_cpu_s": round(time.process_time() - cpu, 1),
                       "load_average_after_build": os.getloadavg()})
        store.close()

        t = time.perf_counter()
        store = EmbeddedStore(tmp)
        store.count()
        store.knn(qs[0], 1)  # the first search maps the files
        result["open_and_load_s"] = round(time.perf_counter() - t, 3)

        ours, exact, filtered, exact_filtered, recalls, filtered_recalls = [], [], [], [], [], []
        text = SearchFilter(text="img7", min_score=0.0)
        for q in qs:
            hits, s = timed(store.knn, q, 10)
            ours.append(s)
            want, s = timed(store.knn, q, 10, SearchFilter(exact=True))
            exact.append(s)
            recalls.append(len(set(ids(hits)) & set(ids(want))) / max(1, len(want)))
            hits, s = timed(store.knn, q, 10, text)
            filtered.append(s)
            want, s = timed(store.knn, q, 10, SearchFilter(text="img7", min_score=0.0, exact=True))
            exact_filtered.append(s)
            filtered_recalls.append(len(set(ids(hits)) & set(ids(want))) / max(1, len(want)))
        result["text_filters"] = [filter_sweep(store, qs, text) for text in SWEEP_TEXTS]
        # Batched kNN (what duplicates use) against the same queries one knn call at a time.
        many, batched_s = timed(store.knn_many, qs, 10)
        store.close()

        np.save(Path(tmp) / "queries.npy", qs)
        serve = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, tmp, str(Path(tmp) / "queries.npy"),
                                str(SERVE_SEARCHES)], cwd=ROOT, check=True, capture_output=True, text=True)
        memory = dict(line.split() for line in serve.stdout.splitlines())
    result.update({
        "knn_p50_ms": percentile_ms(ours, 50), "knn_p95_ms": percentile_ms(ours, 95),
        "recall_at_10": round(statistics.mean(recalls), 4), "min_recall_at_10": min(recalls),
        "knn_text_filter_p50_ms": percentile_ms(filtered, 50),
        "text_filter_recall_at_10": round(statistics.mean(filtered_recalls), 4),
        "baseline_exact_knn_p50_ms": percentile_ms(exact, 50), "baseline_exact_knn_p95_ms": percentile_ms(exact, 95),
        "baseline_exact_text_filter_p50_ms": percentile_ms(exact_filtered, 50),
        "speedup_vs_baseline": round(statistics.median(exact) / statistics.median(ours), 2),
        "knn_many_queries_per_s": round(queries / batched_s),
        "knn_one_at_a_time_queries_per_s": round(queries / sum(ours)),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "serve_rss_anon_mb_after_1000_searches": int(memory["RssAnon"]),
        "serve_rss_file_mb_after_1000_searches": int(memory["RssFile"]),
        "serve_first_text_filter_ms": int(memory["FirstTextFilterMs"]),
        "load_average_at_end": os.getloadavg(),
    })
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dims", type=int, default=512)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--vectors", choices=["clustered", "uniform"], default="clustered")
    args = parser.parse_args()
    results = []
    for size in args.sizes.split(","):
        results.append(run(int(size), args.dims, args.queries, args.vectors))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"backend": "embedded", "cpu": cpu_name(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
