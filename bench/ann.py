"""Choosing the embedded index's vector search: exact NumPy scan (today, the baseline) against ANN libraries.

For each vector set and method: build (vectors/s), save + open (memory-mapped where the library can),
single-query kNN p50/p95, recall@10 against the exact float32 top 10, and the process's anonymous memory
(RssAnon) after opening. Every ANN candidate list is re-ranked with the float32 rows (as core/store/ann.py
does), so recall counts the same ids, not approximate scores. Prints one JSON object.

Vector sets:
- `uniform`: unit vectors uniform on the 512-d sphere, queries fresh ones. All distances are nearly equal
  there, the worst case for any graph or quantizer; today's bench/embedded_index.py uses this set.
- `clustered`: what GeM descriptors look like: non-negative (after ReLU) and clustered (photos of the
  same scene or object), with queries that are perturbed database vectors (this app's queries are an
  image near others: refining from a result, near-duplicates, a re-saved copy).

    python bench/ann.py [--size 100000] [--dims 512] [--queries 200] [--methods exact_i8,usearch_i8,...]

Optional libraries (faiss-cpu, hnswlib) are measured when installed and skipped otherwise.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

K = 10
OVERFETCH = 4  # candidates per wanted hit handed to the float re-rank


def cpu_name() -> str:
    """The CPU's model name (core.runtime.this_cpu) and how many logical CPUs this process sees."""
    from core.runtime import this_cpu

    return f"{this_cpu().model} ({os.cpu_count()} logical CPUs)"


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def uniform_set(n: int, dims: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return unit(rng.standard_normal((n, dims), np.float32)), unit(rng.standard_normal((queries, dims), np.float32))


def clustered_set(n: int, dims: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    """n // 100 clusters of sparse non-negative centres; members are ReLU(centre + noise); queries are
    database vectors with noise of a tenth of the members' spread (a near-duplicate or a close neighbour)."""
    rng = np.random.default_rng(0)
    centres = np.maximum(rng.standard_normal((max(1, n // 100), dims), np.float32), 0) + 0.05
    db = np.empty((n, dims), np.float32)
    for start in range(0, n, 100_000):  # streams: no second n x dims temporary
        stop = min(n, start + 100_000)
        which = rng.integers(0, len(centres), stop - start)
        db[start:stop] = unit(np.maximum(centres[which] + 0.6 * rng.standard_normal((stop - start, dims),
                                                                                       np.float32), 0))
    picks = rng.integers(0, n, queries)
    qs = unit(np.maximum(db[picks] + 0.06 * rng.standard_normal((queries, dims), np.float32), 0))
    return db, qs


def exact_top(db: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    scores = db @ q
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top])]


def rerank(db: np.ndarray, q: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    rows = rows[rows >= 0]
    scores = db[np.sort(rows)] @ q
    return np.sort(rows)[np.argsort(-scores)[:k]]


def to_i8(v: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(v * 127), -127, 127).astype(np.int8)


# Each method: build(db, tmp) -> (build seconds, path), open(path, db) -> search(q) -> rows.
Method = tuple[Callable, Callable]


def usearch_hnsw(dtype: str, connectivity: int) -> Method:
    from usearch.index import Index

    def build(db: np.ndarray, tmp: str) -> str:
        index = Index(ndim=db.shape[1], metric="cos", dtype=dtype, connectivity=connectivity, expansion_add=128)
        for start in range(0, len(db), 10_000):  # streamed like an indexing run
            index.add(np.arange(start, min(len(db), start + 10_000)), db[start : start + 10_000], threads=1)
        path = os.path.join(tmp, f"usearch-{dtype}.usearch")
        index.save(path)
        return path

    def open_(path: str, db: np.ndarray, expansion: int) -> Callable:
        index = Index.restore(path, view=True)
        index.expansion_search = expansion
        return lambda q: rerank(db, q, index.search(q, K * OVERFETCH, threads=1).keys.astype(np.int64), K)

    return build, open_


def usearch_exact_i8() -> Method:
    from usearch.index import search

    def build(db: np.ndarray, tmp: str) -> str:
        path = os.path.join(tmp, "rows.i8")
        to_i8(db).tofile(path)
        return path

    def open_(path: str, db: np.ndarray, expansion: int) -> Callable:
        rows = np.memmap(path, np.int8, "r").reshape(len(db), -1)
        return lambda q: rerank(db, q, search(rows, to_i8(q[None])[0], K * OVERFETCH, "ip", exact=True,
                                              threads=1).keys.astype(np.int64), K)

    return build, open_


def faiss_hnsw(kind: str, m: int) -> Method:
    import faiss

    def build(db: np.ndarray, tmp: str) -> str:
        index = faiss.IndexHNSWFlat(db.shape[1], m, faiss.METRIC_INNER_PRODUCT) if kind == "flat" else \
            faiss.IndexHNSWSQ(db.shape[1], faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 128
        faiss.omp_set_num_threads(1)
        if not index.is_trained:
            index.train(db[:100_000])
        for start in range(0, len(db), 10_000):
            index.add(db[start : start + 10_000])
        path = os.path.join(tmp, f"faiss-{kind}.index")
        faiss.write_index(index, path)
        return path

    def open_(path: str, db: np.ndarray, ef: int) -> Callable:
        index = faiss.read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        index.hnsw.efSearch = ef
        faiss.omp_set_num_threads(1)
        return lambda q: rerank(db, q, index.search(q[None], K * OVERFETCH)[1][0].astype(np.int64), K)

    return build, open_


def hnswlib_hnsw(m: int) -> Method:
    import hnswlib

    def build(db: np.ndarray, tmp: str) -> str:
        index = hnswlib.Index(space="ip", dim=db.shape[1])
        index.init_index(max_elements=len(db), M=m, ef_construction=128)
        for start in range(0, len(db), 10_000):
            index.add_items(db[start : start + 10_000], np.arange(start, min(len(db), start + 10_000)), num_threads=1)
        path = os.path.join(tmp, "hnswlib.bin")
        index.save_index(path)
        return path

    def open_(path: str, db: np.ndarray, ef: int) -> Callable:
        index = hnswlib.Index(space="ip", dim=db.shape[1])
        index.load_index(path)  # no memory-mapped mode: the whole index is read into memory
        index.set_ef(ef)
        index.set_num_threads(1)
        return lambda q: rerank(db, q, index.knn_query(q, K * OVERFETCH)[0][0].astype(np.int64), K)

    return build, open_


METHODS: dict[str, Callable[[], Method]] = {
    "exact_i8": usearch_exact_i8,
    "usearch_i8_m16": lambda: usearch_hnsw("i8", 16),
    "usearch_f16_m16": lambda: usearch_hnsw("f16", 16),
    "faiss_hnswsq8_m16": lambda: faiss_hnsw("sq8", 16),
    "hnswlib_m16": lambda: hnswlib_hnsw(16),
}


def measure(db: np.ndarray, qs: np.ndarray, truth: list[np.ndarray], name: str, tmp: str,
            expansions: list[int]) -> list[dict]:
    """Build once, then open and search at each search-time expansion (ef)."""
    try:
        build, open_ = METHODS[name]()
    except ImportError as exc:
        return [{"method": name, "skipped": f"not installed: {exc.name}"}]
    gc.collect()
    t = time.perf_counter()
    path = build(db, tmp)
    build_s = time.perf_counter() - t
    results = []
    for ef in expansions if name != "exact_i8" else [0]:
        gc.collect()
        before = rss_anon_mb()
        t = time.perf_counter()
        search = open_(path, db, ef)
        search(qs[0])
        open_s = time.perf_counter() - t
        times, recalls = [], []
        for q, want in zip(qs, truth, strict=True):
            t = time.perf_counter()
            got = search(q)
            times.append(time.perf_counter() - t)
            recalls.append(len(set(got.tolist()) & set(want.tolist())) / K)
        results.append({
            "method": name, "expansion_search": ef, "build_vectors_per_s": round(len(db) / build_s),
            "open_s": round(open_s, 4), "knn_p50_ms": round(float(np.percentile(times, 50)) * 1000, 3),
            "knn_p95_ms": round(float(np.percentile(times, 95)) * 1000, 3),
            "recall_at_10": round(statistics.mean(recalls), 4), "min_recall_at_10": min(recalls),
            "rss_anon_after_open_mb": round(rss_anon_mb() - before, 1),
            "file_mb": round(os.path.getsize(path) / 2**20, 1),
        })
        del search
    os.remove(path)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sets", default="clustered,uniform")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--expansions", default="64,128,256", help="search-time ef values for the graphs")
    args = parser.parse_args()
    out: dict = {"cpu": cpu_name(), "size": args.size, "dims": args.dims, "queries": args.queries,
                 "k": K, "overfetch": OVERFETCH, "sets": {}}
    for set_name in args.sets.split(","):
        db, qs = (clustered_set if set_name == "clustered" else uniform_set)(args.size, args.dims, args.queries)
        times, truth = [], []
        for q in qs:  # the baseline: today's exact float32 scan
            t = time.perf_counter()
            truth.append(exact_top(db, q, K))
            times.append(time.perf_counter() - t)
        rows = [{"method": "exact_f32 (baseline)", "knn_p50_ms": round(float(np.percentile(times, 50)) * 1000, 3),
                 "knn_p95_ms": round(float(np.percentile(times, 95)) * 1000, 3), "recall_at_10": 1.0}]
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.methods.split(","):
                for row in measure(db, qs, truth, name, tmp, [int(e) for e in args.expansions.split(",")]):
                    if "knn_p50_ms" in row:
                        row["speedup_vs_baseline"] = round(rows[0]["knn_p50_ms"] / row["knn_p50_ms"], 2)
                    rows.append(row)
                    print(json.dumps({set_name: row}), file=sys.stderr, flush=True)
        out["sets"][set_name] = rows
        del db, qs
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
