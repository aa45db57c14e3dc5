"""Elasticsearch kNN benchmark: latency, recall and ingest speed of the index types, as JSON on stdout.

    python bench/knn.py                                   # starts its own server (2g heap), stops it after
    python bench/knn.py --configs 512:10000 --types int8_hnsw,flat --url http://127.0.0.1:9200
    ES_JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64 python bench/knn.py --configs 4096:100000 --force-merge

For each DIMS:COUNT config: synthetic clustered unit vectors (uniform random ones make every neighbour
equally far, so recall would mean little), held-out queries from the same clusters, exact top-k from
NumPy, then per index type: bulk ingest through ElasticStore.upsert (docs/s), p50/p95 latency of
ElasticStore.knn as the app calls it, after a warm-up, and recall@k against the exact answer. `flat` is
the exhaustive baseline (every vector compared); the original project's `script_score` scan needs the
Painless module, which the test distribution lacks, and is tried and reported as unavailable there.
Also per type: the p50 of the warm-up's first queries (a fresh server's JIT has not compiled the search
yet), and of an empty request, the floor under any latency here; and one `index` request per document
(the original project's pattern) against bulk, on a sample.

The server's Java matters: on 21+ Elasticsearch uses SIMD (Panama and its native vector library) for
both HNSW and `flat`; on 17 it falls back to scalar code. The JSON names the JVM that ran.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.duplicates import segments  # noqa: E402
from core.runtime import this_cpu  # noqa: E402
from core.store.base import ImageRecord, ModelIdentity, SearchFilter  # noqa: E402
from core.store.elastic import BULK_THREADS, ElasticStore  # noqa: E402
from core.store.elastic import _document as elastic_document  # noqa: E402

BATCH = 500
COLD_QUERIES = 250  # the first warm-up queries of each type, reported apart: the latency before warm-up


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def clustered(n: int, dims: int, centres: np.ndarray, seed: int, spread: float = 0.7) -> np.ndarray:
    """Unit vectors around random centres; spread 0.7 gives ~0.67 cosine within a cluster, ~0 across."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dims), np.float32)
    for start in range(0, n, 10_000):  # in chunks: 100k x 4096 in float64 would need 3 GB at once
        m = min(10_000, n - start)
        noise = rng.standard_normal((m, dims), np.float32) * (spread / np.sqrt(dims))
        x = centres[rng.integers(0, len(centres), m)] + noise
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_top(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ data.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)


def records(n: int, offset: int = 0) -> list[ImageRecord]:
    return [ImageRecord(f"b{i:07d}", (f"/bench/album{i % 50}/img{i:07d}.jpg",), 100_000, 1_700_000_000_000_000_000,
                        1_700_000_000_000_000_000, i, "h", 640, 480) for i in range(offset, offset + n)]


def percentile_ms(samples: list[float], q: float) -> float:
    return round(float(np.percentile(samples, q)) * 1000, 2)


def bench_type(url: str, index_type: str, data: np.ndarray, queries: np.ndarray, exact: np.ndarray, k: int,
               force_merge: bool, warm_up: np.ndarray, warm_up_s: float, bulk_threads: int, keep: bool,
               curve: list[tuple[int, float]]) -> dict:
    n, dims = data.shape
    alias = f"bench-{index_type.replace('_', '-')}-{dims}-{n}"
    store = ElasticStore(url, alias, index_type=index_type, timeout_s=120)
    store.bulk_threads = bulk_threads
    identity = ModelIdentity("gem", dims, "bench")
    reused = keep and store.identity == identity and store.count() == n
    if not reused:
        _drop(store)
    try:
        ingest: dict = {"reused": True}  # an index kept by an earlier --keep run: its ingest is in that report
        if not reused:
            store.initialize(identity)
            started = time.perf_counter()
            for s in range(0, n, BATCH):
                store.upsert(records(min(BATCH, n - s), s), data[s : s + BATCH])
                if s % 100_000 == 0 and s:
                    log(f"  {s} docs, {s / (time.perf_counter() - started):.0f} docs/s")
            store.finish()
            ingest_s = time.perf_counter() - started
            ingest = {"ingest_docs_per_s": round(n / ingest_s), "ingest_s": round(ingest_s, 1),
                      "bulk_threads": bulk_threads}
            log(f"  ingest {ingest}")
        if force_merge:
            started = time.perf_counter()
            store._es.options(request_timeout=7200).indices.forcemerge(index=alias, max_num_segments=1)
            store.finish()
            ingest["force_merge_s"] = round(time.perf_counter() - started, 1)
            if "ingest_s" in ingest:  # new indices are written flat and get their graph in this merge
                ingest["ingest_and_merge_s"] = round(ingest["ingest_s"] + ingest["force_merge_s"], 1)
        segment_count = segments(store)
        # Warm-up with other queries from the same clusters, until the server answers as one that has been
        # serving for a while: the JVM compiles the per-request code only after thousands of requests. At
        # 100k x 4096-d (int8_hnsw, Java 25) a restarted server measured p50 6.6 ms over its first 250
        # queries, 4.7 ms at 500, 2.6 ms at 2000, 2.0 ms from ~4000 on. `flat` (~140 ms a query there)
        # stops at the time cap; its cost is the vector scan, which is compiled within its first query.
        warmed, cold = 0, []
        deadline = time.perf_counter() + warm_up_s
        for q in warm_up:
            t = time.perf_counter()
            store.knn(q, k)
            if len(cold) < COLD_QUERIES:
                cold.append(time.perf_counter() - t)
            warmed += 1
            if time.perf_counter() > deadline:
                break
        latencies, found = [], 0
        for q, truth in zip(queries, exact, strict=True):
            t = time.perf_counter()
            hits = store.knn(q, k)
            latencies.append(time.perf_counter() - t)
            found += len({int(h.record.id[1:]) for h in hits} & set(truth.tolist()))
        # The same request with no search in it: the floor under any kNN latency on this server.
        empty = []
        for _ in queries:
            t = time.perf_counter()
            store._es.search(index=alias, size=0, track_total_hits=False)
            empty.append(time.perf_counter() - t)
        quantized = index_type not in ("flat", "hnsw")
        raw = _without_rescoring(store, queries, exact, k) if quantized else None
        size = store._es.indices.stats(index=alias, metric="store")["_all"]["total"]["store"]["size_in_bytes"]
        clause = store._knn_clause(queries[0], k, SearchFilter())
        return {
            "type": index_type,
            **ingest,
            "segments": segment_count,
            "num_candidates": clause["num_candidates"],
            "oversample": clause.get("rescore_vector", {}).get("oversample"),
            "p50_ms": percentile_ms(latencies, 50),
            "p95_ms": percentile_ms(latencies, 95),
            "warm_up_queries": warmed,
            f"first_{COLD_QUERIES}_queries_p50_ms": percentile_ms(cold, 50),
            f"recall_at_{k}": round(found / (len(queries) * k), 4),
            "empty_search_p50_ms": percentile_ms(empty, 50),
            "disk_mb": round(size / 2**20, 1),
            **({"without_rescore": raw} if raw else {}),
            **({"curve": [_tuned(store, queries, exact, k, c, o if quantized else None) for c, o in curve]}
               if curve else {}),
        }
    finally:
        if not keep:
            _drop(store)
        store.close()


def _tuned(store: ElasticStore, queries: np.ndarray, exact: np.ndarray, k: int, candidates: int,
           oversample: float | None) -> dict:
    """p50/p95 and recall@k of the store's kNN request with other num_candidates and oversample (0: no
    re-scoring; None: the type has none), sent as the store sends it (one search in an _msearch)."""
    latencies, found = [], 0
    for q, truth in zip(queries, exact, strict=True):
        clause = {**store._knn_clause(q, k, SearchFilter()), "num_candidates": candidates}
        if oversample is not None:
            clause["rescore_vector"] = {"oversample": oversample}
        t = time.perf_counter()
        response = store._es.msearch(searches=[{"index": store.alias}, {"query": {"knn": clause}, "size": k}])
        latencies.append(time.perf_counter() - t)
        hits = response["responses"][0]["hits"]["hits"]
        found += len({int(h["_id"][1:]) for h in hits} & set(truth.tolist()))
    point = {"num_candidates": candidates, "oversample": oversample, "p50_ms": percentile_ms(latencies, 50),
             "p95_ms": percentile_ms(latencies, 95), f"recall_at_{k}": round(found / (len(queries) * k), 4)}
    log(f"    {point}")
    return point


def _without_rescoring(store: ElasticStore, queries: np.ndarray, exact: np.ndarray, k: int) -> dict:
    """The same kNN ranked by the quantized estimates alone (what the store avoids with rescore_vector)."""
    clause = store._knn_clause(queries[0], k, SearchFilter())
    point = _tuned(store, queries, exact, k, clause["num_candidates"], 0)
    return {"p50_ms": point["p50_ms"], f"recall_at_{k}": point[f"recall_at_{k}"]}


def script_score_probe(url: str, data: np.ndarray) -> dict:
    """The original project's exhaustive query, where the server has Painless."""
    dims = data.shape[1]
    store = ElasticStore(url, f"bench-script-{dims}", index_type="flat")
    _drop(store)
    try:
        store.initialize(ModelIdentity("gem", dims, "bench"))
        store.upsert(records(100), data[:100])
        store.finish()
        body = {"script_score": {"query": {"match_all": {}}, "script": {
            "source": "cosineSimilarity(params.q, 'vector') + 1.0", "params": {"q": data[0].tolist()}}}}
        t = time.perf_counter()
        store._es.search(index=store.alias, query=body, size=10)
        return {"available": True, "ms_100_docs": round((time.perf_counter() - t) * 1000, 2)}
    except Exception as exc:  # reported, not hidden
        return {"available": False, "reason": str(exc)[:200]}
    finally:
        _drop(store)
        store.close()


INGEST_MODES = ("per_doc_index_call", "refresh_per_batch", "streaming_bulk", "parallel_bulk")
PER_DOC_SAMPLE = 1000  # one request per document is slow: its mode writes at most this many


def ingest_modes(url: str, data: np.ndarray, sample: int) -> dict:
    """Ingest speed of the same documents written four ways into a fresh int8_hnsw index each:
    one `index` request per document (the original project's pattern, on at most PER_DOC_SAMPLE docs);
    the store's upsert as it was before the large-ingest work (a refresh before each batch's path lookup,
    which cut a segment per batch; streaming_bulk); the store's upsert with streaming_bulk; and as it is
    now (parallel_bulk, BULK_THREADS threads). Batches of BATCH documents, docs/s including the final
    refresh, and until no merge runs (merges run in the background and the next ingest pays for them)."""
    data, dims = data[:sample], data.shape[1]
    result: dict = {"dims": dims, "docs": sample}
    for mode in INGEST_MODES:
        n = min(sample, PER_DOC_SAMPLE) if mode == "per_doc_index_call" else sample
        store = ElasticStore(url, f"bench-ingest-{dims}", index_type="int8_hnsw", timeout_s=120)
        store.bulk_threads = BULK_THREADS if mode == "parallel_bulk" else 1
        _drop(store)
        try:
            store.initialize(ModelIdentity("gem", dims, "bench"))
            started = time.perf_counter()
            if mode == "per_doc_index_call":
                for r, v in zip(records(n), data[:n], strict=True):
                    store._es.index(index=store.alias, id=r.id, document=elastic_document(r, v))
            else:
                for s in range(0, n, BATCH):
                    if mode == "refresh_per_batch":
                        store._refresh()
                    store.upsert(records(min(BATCH, n - s), s), data[s : s + BATCH])
            store.finish()
            result[f"{mode}_docs_per_s"] = round(n / (time.perf_counter() - started))
            # Small segments defer HNSW work to background merges: also the rate once none is running.
            while store._es.indices.stats(index=store.alias, metric="merge")["_all"]["primaries"]["merges"]["current"]:
                time.sleep(0.5)
            result[f"{mode}_merged_docs_per_s"] = round(n / (time.perf_counter() - started))
            result[f"{mode}_segments"] = len(store._es.cat.segments(index=store.alias, format="json"))
            log(f"  {mode}: {result[f'{mode}_docs_per_s']} docs/s, {result[f'{mode}_merged_docs_per_s']} "
                f"with merges, {result[f'{mode}_segments']} segments")
        finally:
            _drop(store)
            store.close()
    result["speedup_vs_refresh_per_batch"] = round(result["parallel_bulk_merged_docs_per_s"]
                                                   / result["refresh_per_batch_merged_docs_per_s"], 2)
    return result


def _drop(store: ElasticStore) -> None:
    es = store._es
    names = list(es.indices.get(index=f"{store.alias}-*", ignore_unavailable=True, allow_no_indices=True))
    if names:
        es.indices.delete(index=names)


def start_server(heap: str) -> str:
    env = {**os.environ, "IMAGE_SEARCH_ES_HEAP": heap}
    out = subprocess.run(["bash", str(REPO / "scripts" / "start-test-elasticsearch.sh")], env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="an existing server (default: start one with the test script)")
    p.add_argument("--heap", default="2g", help="heap of the server this starts (default: 2g)")
    p.add_argument("--configs", default="512:10000,4096:10000",
                   help="DIMS:COUNT,... (default: %(default)s, ~5 min here; 512:100000 alone takes ~8 min); "
                        "empty: only the ingest modes, on 512-d")
    p.add_argument("--types", default="int8_hnsw,bbq_hnsw,flat", help="dense_vector index types (default: %(default)s)")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--warm-up", type=int, default=5000,
                   help="queries run before the timed ones, per index type (default: %(default)s) ...")
    p.add_argument("--warm-up-s", type=float, default=60, help="... or for at most this long (default: %(default)s)")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--ingest-sample", type=int, default=1000, help="docs for the comparison of ingest modes (0: skip)")
    p.add_argument("--force-merge", action="store_true", help="merge to one segment before querying")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bulk-threads", type=int, default=BULK_THREADS,
                   help="parallel_bulk threads of the store's upsert (default: %(default)s; 1: streaming_bulk)")
    p.add_argument("--keep", action="store_true",
                   help="keep the indices, and reuse one that already holds the config's documents (no ingest)")
    p.add_argument("--curve", default="",
                   help="NUM_CANDIDATES:OVERSAMPLE,... points of a recall/latency curve measured per type "
                        "(e.g. 50:3,100:3,200:3,200:5)")
    args = p.parse_args(argv)

    url = args.url or start_server(args.heap)
    log(f"Elasticsearch at {url}")
    report: dict = {"server": url if args.url else f"started by the bench, heap {args.heap}",
                    "java": os.environ.get("ES_JAVA_HOME", "default"), "k": args.k, "queries": args.queries,
                    "warm_up": f"{args.warm_up} queries or {args.warm_up_s:g} s per type",
                    "force_merge": args.force_merge, "results": []}
    try:
        version = ElasticStore(url)._es.nodes.info(metric="jvm")["nodes"]
        node = next(iter(version.values()))
        report["es_version"], report["jvm"] = node["version"], node["jvm"]["version"]
        report["heap_mb"] = round(node["jvm"]["mem"]["heap_max_in_bytes"] / 2**20)
        report["cpu"], report["cpus"] = this_cpu().model, os.cpu_count()
        report["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
        for config in filter(None, args.configs.split(",")):
            dims, n = (int(x) for x in config.split(":"))
            rng = np.random.default_rng(args.seed)
            centres = rng.standard_normal((max(10, n // 100), dims)).astype(np.float32)
            centres /= np.linalg.norm(centres, axis=1, keepdims=True)
            data = clustered(n, dims, centres, args.seed + 1)
            queries = clustered(args.queries, dims, centres, args.seed + 2)
            warm_up = clustered(args.warm_up, dims, centres, args.seed + 3)
            exact = exact_top(data, queries, args.k)
            entry: dict = {"dims": dims, "count": n, "clusters": len(centres), "types": []}
            for index_type in args.types.split(","):
                if index_type.startswith("bbq") and dims < 64:
                    continue
                log(f"{dims}-d x {n}: {index_type} ...")
                started = time.perf_counter()
                curve = [(int(c), float(o)) for c, o in (p.split(":") for p in args.curve.split(",") if p)]
                entry["types"].append(bench_type(url, index_type, data, queries, exact, args.k, args.force_merge,
                                                 warm_up, args.warm_up_s, args.bulk_threads, args.keep, curve))
                log(f"  {entry['types'][-1]} ({time.perf_counter() - started:.0f} s)")
            flat = next((t for t in entry["types"] if t["type"] == "flat"), None)
            if flat:  # the goal: >= 50x faster than exhaustive at 100k, with recall@10 >= 0.98
                for t in entry["types"]:
                    t["p50_speedup_vs_flat"] = round(flat["p50_ms"] / t["p50_ms"], 1)
                # No index type can beat flat by more than this: its p50 over a request that searches nothing.
                entry["speedup_ceiling"] = round(flat["p50_ms"] / flat["empty_search_p50_ms"], 1)
            report["results"].append(entry)
        first_dims = int(args.configs.split(",")[0].split(":")[0]) if args.configs else 512
        sample = clustered(max(args.ingest_sample, 100), first_dims, np.eye(1, first_dims, dtype=np.float32), 7)
        report["script_score"] = script_score_probe(url, sample)
        if args.ingest_sample:
            log("ingest modes ...")
            report["ingest"] = ingest_modes(url, sample, args.ingest_sample)
        report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if not args.url:
            subprocess.run(["bash", str(REPO / "scripts" / "stop-test-elasticsearch.sh"), url], capture_output=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
