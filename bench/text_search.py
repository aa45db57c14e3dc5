"""Words-only search on N records (default 100,000): p50/p95 latency per backend, as JSON on stdout.

    python bench/text_search.py                                  # embedded only
    python bench/text_search.py --es-url http://127.0.0.1:9200   # and Elasticsearch (a fresh alias, dropped after)
    python bench/text_search.py --es-url URL --no-embedded --es-alias NAME --keep   # keep NAME's records:
                                                                 # later runs with the same NAME reuse them

Synthetic library: N records under 1,000 folders with names `IMG_<n>.jpg`, each annotated (core/store/
annotations.py) with a date taken spread over ten years, one of 20 cameras, and, on every 10th image, one
of 50 tags. Queries are what `image-search search --text ...` runs (core.store.annotations.search_words,
k=50, newest first): a tag word, a folder word, a camera word, a rare name, a date range, a word that
matches nothing. Baseline, same run: a plain Python scan over the same data held in memory (fold every
field, match every record, sort by date), what a store without the side index would have to do at least.
Vectors have 8 dimensions: they play no part in a words-only search, and small ones keep ingest short.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.metadata import PhotoMetadata  # noqa: E402
from core.paths import fold, query_words, words_match  # noqa: E402
from core.runtime import this_cpu  # noqa: E402
from core.store.annotations import PhotoFilter, annotations_for, search_words  # noqa: E402
from core.store.base import ImageRecord, ModelIdentity  # noqa: E402

IDENTITY = ModelIdentity("gem", 8, "random-0")
BATCH = 5000
K = 50
CAMERAS = [f"Brand{i} Model {i * 7}" for i in range(20)]
TAGS = [f"tag{i:02d}" for i in range(50)]
QUERIES = {  # name: (text, after, before, camera)
    "tag": ("tag07", None, None, None),
    "folder": ("folder0042", None, None, None),
    "camera_word": ("brand3", None, None, None),
    "rare_name": ("img_0031337.jpg", None, None, None),
    "date_range": (None, "2020-01-01", "2020-03-31", None),
    "tag_and_camera_filter": ("tag07", None, None, "brand1"),
    "no_match": ("zzzz", None, None, None),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def library(n: int) -> tuple[list[ImageRecord], dict[str, PhotoMetadata], dict[str, list[str]]]:
    rng = np.random.default_rng(0)
    start = datetime(2015, 1, 1)
    records, metadata, tags = [], {}, {}
    for i in range(n):
        image_id = f"{i:016x}"
        records.append(ImageRecord(image_id, (f"/photos/folder{i % 1000:04d}/IMG_{i:07d}.jpg",), 1000, 10**18, 10**18,
                                   i, f"{i:032x}", 640, 480))
        taken = start + timedelta(seconds=int(rng.integers(0, 10 * 365 * 86400)))
        metadata[image_id] = PhotoMetadata(taken, "exif", CAMERAS[i % len(CAMERAS)], None, 640, 480)
        if i % 10 == 0:
            tags[image_id] = [TAGS[(i // 10) % len(TAGS)]]
    return records, metadata, tags


def fill(store, records, metadata, tags, vectors: bool = True) -> float:
    """Write the records (unless not `vectors`: they are there already) and their annotations; seconds."""
    started = time.perf_counter()
    store.initialize(IDENTITY)
    notes = annotations_for(store)
    values = np.random.default_rng(1).standard_normal((len(records), IDENTITY.dims)).astype(np.float32)
    values /= np.linalg.norm(values, axis=1, keepdims=True)
    for start in range(0, len(records), BATCH):
        chunk = records[start:start + BATCH]
        if vectors:
            store.upsert(chunk, values[start:start + BATCH])
        notes.put_records(chunk, {r.id: metadata[r.id] for r in chunk})
        log(f"  {start + len(chunk)}/{len(records)}")
    by_tag: dict[str, list[str]] = {}
    for image_id, image_tags in tags.items():
        by_tag.setdefault(image_tags[0], []).append(image_id)
    for tag, ids in by_tag.items():
        notes.add_tags(ids, [tag])
    store.finish()
    notes.close()
    return time.perf_counter() - started


def timed(fn, repeats: int) -> dict:
    """p50/p95 of `repeats` calls after a warm-up call, whose time is `first_ms` (a cold cache: the first
    query of a process, as a CLI run pays it)."""
    started = time.perf_counter()
    fn()
    first = (time.perf_counter() - started) * 1000
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
            "first_ms": round(first, 2), "results": len(result)}


def bench_store(store, repeats: int) -> dict:
    out = {}
    for name, (text, after, before, camera) in QUERIES.items():
        notes = annotations_for(store)  # fresh: first_ms includes loading what the search scans
        photo = PhotoFilter.parse(after, before, camera)
        out[name] = timed(lambda: search_words(store, notes, text, K, photo), repeats)  # noqa: B023
        log(f"  {name}: {out[name]}")
        notes.close()
    return out


def baseline(records, metadata, tags, repeats: int) -> dict:
    """A plain scan in Python over data already in memory: fold, match, sort newest first."""
    rows = [(r, metadata[r.id], tags.get(r.id, [])) for r in records]

    def scan(text, after, before, camera):
        words, photo = query_words(text), PhotoFilter.parse(after, before, camera)
        hits = []
        for record, meta, image_tags in rows:
            fields = record.folded_fields() + [fold(t) for t in image_tags] + [fold(meta.camera)]
            local = meta.taken_local()
            if photo.after and local < photo.after or photo.before and local > photo.before:
                continue
            if not all(w in fold(meta.camera) for w in photo.camera_words()):
                continue
            if words_match(words, fields):
                hits.append((local, record))
        hits.sort(key=lambda h: h[0], reverse=True)
        return hits[:K]

    return {name: timed(lambda: scan(*q), repeats) for name, q in QUERIES.items()}  # noqa: B023


def drop(url: str, alias: str) -> None:
    """Delete the indices of `alias` (the server refuses wildcard deletes)."""
    from elasticsearch import Elasticsearch

    with Elasticsearch(url, request_timeout=60) as es:
        names = list(es.indices.get(index=f"{alias},{alias}-*", ignore_unavailable=True, allow_no_indices=True))
        if names:
            es.indices.delete(index=names, ignore_unavailable=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="records (default 100000)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--es-url", help="also benchmark Elasticsearch at this URL (a fresh alias, dropped after)")
    parser.add_argument("--es-alias", help="the alias to use (default: a fresh one); the records of one already "
                        "filled with -n records are reused (its annotations are written again)")
    parser.add_argument("--keep", action="store_true", help="keep the Elasticsearch indices after the run")
    parser.add_argument("--no-embedded", action="store_true", help="skip the embedded store")
    parser.add_argument("--no-fill", action="store_true", help="Elasticsearch: only measure the queries on "
                        "--es-alias as an earlier run with --keep left it (A/B runs of two versions, interleaved)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the Python scan baseline")
    args = parser.parse_args()
    records, metadata, tags = library(args.n)
    result = {"n": args.n, "k": K, "repeats": args.repeats, "cpu": this_cpu().model,
              "python": platform.python_version(),
              "queries": {name: dict(zip(("text", "after", "before", "camera"), q, strict=True))
                          for name, q in QUERIES.items()}}
    if not args.no_baseline:
        log("baseline: plain Python scan")
        result["baseline_python_scan"] = baseline(records, metadata, tags, max(3, args.repeats // 4))
    if not args.no_embedded:
        from core.store.embedded import EmbeddedStore

        with tempfile.TemporaryDirectory() as folder:
            store = EmbeddedStore(folder)
            log("embedded: filling")
            result["embedded_fill_s"] = round(fill(store, records, metadata, tags), 1)
            result["embedded"] = bench_store(store, args.repeats)
            store.close()
    if args.es_url:
        from core.store.annotations import SIDE_INDEX_SUFFIX
        from core.store.elastic import ElasticStore

        alias = args.es_alias or f"bench-text-{uuid.uuid4().hex[:8]}"
        store = ElasticStore(args.es_url, alias)
        try:
            reuse = store.identity is not None and store.count() == args.n
            if not (reuse and args.no_fill):
                # The annotations are written anew even when the records are reused: they are what is measured.
                log(f"elasticsearch: {'annotations of ' + alias if reuse else 'filling'}")
                drop(args.es_url, alias + SIDE_INDEX_SUFFIX)
                result["elasticsearch_fill_s"] = round(fill(store, records, metadata, tags, vectors=not reuse), 1)
            result["elasticsearch"] = bench_store(store, args.repeats)
        finally:
            store.close()
            if not args.keep:
                drop(args.es_url, alias)
    for backend in ("embedded", "elasticsearch"):
        if backend in result and "baseline_python_scan" in result:
            result[f"{backend}_p50_ratio_to_baseline"] = {
                name: round(result[backend][name]["p50_ms"] / max(result["baseline_python_scan"][name]["p50_ms"],
                                                                   1e-3), 3) for name in QUERIES}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
