"""Duplicate groups at scale: core.duplicates.find_groups on synthetic unit vectors with planted clusters.

The vectors are random 512-d unit vectors (two of them have cosine ~N(0, 1/512): none near a duplicate
threshold) plus planted clusters of 2-6 near-duplicates (each member at cosine 0.985-0.999 from its cluster's
centre, so members pair at >= ~0.97) and some exact copies (equal vector and content hash), in a real
EmbeddedStore. Measured: time to group, peak RSS while grouping (VmHWM after resetting it through
/proc/self/clear_refs), and the recall of the pairs that an exact all-pairs computation finds at or above
the threshold among the first `--subset` images. Same-run baseline: that exact all-pairs computation in
blocks (one matrix product per block of rows, no N×N matrix held), timed on the subset and scaled by
(N / subset)^2 to N. Prints one JSON object; figures for 1M images are projected from the measured ones
linearly (the embedded store range-searches inverted lists of about sqrt N rows a list, Elasticsearch walks
an HNSW graph: both grow slower than N per query, so the projection is an upper bound for the first and a
rough one for the second). Run it at 1,000,000 to measure that figure instead: `--data-dir` keeps the
embedded store for later runs, whose `ingest_s` is then null.

The opt-in pass for mirrored and rotated copies (core.duplicates.variant_pairs) is measured apart with the
real VGG16 graph (deterministic random weights: speed does not depend on them) on `--variants` synthetic
640x480 photos: seconds per image for the pass against the embedding stage of indexing (resize + embed).

    python bench/duplicates.py [--size 100000] [--subset 20000] [--threshold 0.95] [--k 16] [--batch 256]
                               [--variants 8] [--es-url http://127.0.0.1:9200] [--data-dir DIR]

With --es-url the grouping runs on Elasticsearch (a fresh alias, deleted afterwards): kNN queries go in
batches through `_msearch` (ElasticStore.knn_many), vectors are read a thousand ids a search. The ingest's
finish() starts a force merge on the server; grouping starts once it is done (`merge_s`, apart from
`ingest_s` and `grouping_s`).

The default size keeps the run to a few minutes on a shared 2-core machine; pass --size 100000 for the
issue's figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.duplicates import VARIANTS, find_groups, variant_pairs
from core.runtime import this_cpu
from core.store import ImageRecord, ModelIdentity, VectorStore
from core.store.embedded import EmbeddedStore

PLANTED_FRACTION = 0.1  # of the images, in planted clusters
EXACT_FRACTION = 0.1  # of the planted members, exact copies of their cluster's first image


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def planted(size: int, dims: int, seed: int) -> tuple[list[ImageRecord], np.ndarray]:
    """Records and unit vectors, clusters interleaved with noise so that any subset holds some."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((size, dims), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    hashes = [f"{i:032x}" for i in range(size)]
    # A cluster starts at an image with probability p; clusters average 4 images, so a fraction
    # 4p / (4p + 1 - p) of the images is planted: p below makes that PLANTED_FRACTION.
    p = PLANTED_FRACTION / (4 - 3 * PLANTED_FRACTION)
    i = 0
    while i < size:
        n = int(rng.integers(2, 7))
        if rng.random() < p and i + n <= size:
            centre = vectors[i].copy()
            for j in range(i + 1, i + n):
                if rng.random() < EXACT_FRACTION:
                    vectors[j], hashes[j] = centre, hashes[i]
                    continue
                cos = rng.uniform(0.985, 0.999)
                noise = vectors[j] - (vectors[j] @ centre) * centre
                vectors[j] = cos * centre + np.sqrt(1 - cos**2) * noise / np.linalg.norm(noise)
            i += n
        else:
            i += 1
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [ImageRecord(f"{i:016x}", (f"/photos/{i // 1000:03d}/img{i:07d}.jpg",), 100_000 + i % 997, 10**18 + i,
                           10**18 + i, i + 1, hashes[i], 4000, 3000) for i in range(size)]
    return records, vectors


def all_pairs(vectors: np.ndarray, threshold: float, block: int = 1024) -> set[tuple[int, int]]:
    """Exact: every pair (i < j) with cosine >= threshold, a block of rows at a time."""
    pairs = set()
    for start in range(0, len(vectors), block):
        scores = vectors[start : start + block] @ vectors.T
        for r, c in zip(*np.nonzero(scores >= threshold), strict=True):
            if start + r < c:
                pairs.add((int(start + r), int(c)))
    return pairs


@contextmanager
def bench_store(es_url: str | None, data_dir: str | None = None) -> Iterator[VectorStore]:
    """A fresh EmbeddedStore in a temporary folder (or kept in `data_dir`), or an ElasticStore on a fresh
    alias of `es_url` (its indices are deleted afterwards)."""
    if es_url is None:
        with contextlib.ExitStack() as stack:
            store = EmbeddedStore(data_dir or stack.enter_context(tempfile.TemporaryDirectory()))
            stack.callback(store.close)
            yield store
        return
    from core.store.elastic import ElasticStore

    alias = f"bench-duplicates-{uuid.uuid4().hex[:8]}"
    store = ElasticStore(es_url, alias, timeout_s=60)
    try:
        yield store
    finally:
        names = list(store._es.indices.get(index=f"{alias}-*", ignore_unavailable=True, allow_no_indices=True))
        if names:
            store._es.indices.delete(index=names, ignore_unavailable=True)
        store.close()


def segments(store) -> int:
    """Segments of an ElasticStore's index (primaries): how many HNSW graphs a kNN query walks."""
    found = store._es.indices.segments(index=store.alias)["indices"]
    return sum(len(copy["segments"]) for index in found.values() for shard in index["shards"].values()
               for copy in shard if copy["routing"]["primary"])


def run(size: int, subset: int, dims: int, threshold: float, k: int, batch: int, es_url: str | None,
        data_dir: str | None = None) -> dict:
    records, vectors = planted(size, dims, 0)
    subset = min(subset, size)
    result: dict = {"images": size, "dims": dims, "threshold": threshold, "k": k, "batch": batch,
                    "cpu": this_cpu().model, "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    with bench_store(es_url, data_dir) as store:
        result["backend"] = store.backend
        store.initialize(ModelIdentity("gem", dims, "random-0"))
        if store.count() == size:  # kept in --data-dir by an earlier run: its ingest is not measured again
            result["ingest_s"] = None
        else:
            t = time.perf_counter()
            for start in range(0, size, 1000):
                store.upsert(records[start : start + 1000], vectors[start : start + 1000])
            store.finish()
            result["ingest_s"] = round(time.perf_counter() - t, 2)
        if es_url is not None:  # finish() started a force merge on the server: group once it is done
            t = time.perf_counter()
            result["segments_before_merge"] = segments(store)
            with warnings.catch_warnings():  # the task API is a "technical preview"
                warnings.simplefilter("ignore")
                while store._es.tasks.list(actions="indices:admin/forcemerge*")["nodes"]:
                    time.sleep(0.5)
            result.update({"merge_s": round(time.perf_counter() - t, 2), "segments": segments(store)})
        store.knn(vectors[0], 1)  # load the matrix (embedded) or warm the searcher before timing
        result["rss_before_grouping_mb"] = rss_mb()
        result["peak_rss_reset"] = reset_peak_rss()

        t, cpu = time.perf_counter(), time.process_time()
        groups = find_groups(store, threshold, k=k, batch=batch)
        grouping_s, grouping_cpu_s = time.perf_counter() - t, time.process_time() - cpu
        result["load_average_after_grouping"] = os.getloadavg()
        result["peak_rss_while_grouping_mb"] = peak_rss_mb()
    result.update({"grouping_s": round(grouping_s, 2), "grouping_cpu_s": round(grouping_cpu_s, 2),
                   "groups": len(groups),
                   "grouped_images": sum(len(g.members) for g in groups),
                   "kinds": {kind: sum(g.kind == kind for g in groups) for kind in ("exact", "near-duplicate",
                                                                                    "similar")}})

    t, cpu = time.perf_counter(), time.process_time()
    truth = all_pairs(vectors[:subset], threshold)
    baseline_s, baseline_cpu_s = time.perf_counter() - t, time.process_time() - cpu
    group_of = {m.record.id: n for n, g in enumerate(groups) for m in g.members}
    found = sum(1 for a, b in truth if group_of.get(records[a].id, -1) == group_of.get(records[b].id, -2))
    scale = (size / subset) ** 2
    result.update({
        "recall_subset": subset,
        "recall_pairs": len(truth),
        "recall_of_all_pairs": round(found / len(truth), 5) if truth else None,
        "baseline_all_pairs_subset_s": round(baseline_s, 2),
        "baseline_all_pairs_subset_cpu_s": round(baseline_cpu_s, 2),
        "baseline_all_pairs_projected_s": round(baseline_s * scale, 1),
        "grouping_vs_baseline_projected": round(grouping_s / (baseline_s * scale), 2),
        "grouping_vs_baseline_projected_cpu": round(grouping_cpu_s / (baseline_cpu_s * scale), 2),
        # Linear in N (see the module's docstring); the exact all-pairs scan grows with N x N.
        "projected_1m_grouping_s": round(grouping_s * 1_000_000 / size),
        "projected_1m_matrix_gb": round(1_000_000 * dims * 4 / 1e9, 1),
    })
    return result


def variants_cost(count: int) -> dict:
    """Seconds per image: the embedding stage of indexing against the mirror + rotations pass."""
    from PIL import Image

    from core.model import Extractor, resolve_weights, to_model_pixels

    extractor = Extractor("gem", resolve_weights("random", "gem"))
    rng = np.random.default_rng(2)
    ramp = np.linspace(0, 255, 640, dtype=np.float32)
    images = []
    for _ in range(count):  # smooth colour ramps with noise: a photo's cost, not a blank's
        pixels = ramp[None, :, None] * rng.uniform(0.2, 1, 3) + rng.normal(0, 20, (480, 640, 3))
        images.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))

    def embed(batch: list) -> np.ndarray:
        return extractor.embed(np.stack([to_model_pixels(image) for image in batch]))

    t = time.perf_counter()
    vectors = embed(images)
    plain_s = (time.perf_counter() - t) / count
    with tempfile.TemporaryDirectory() as tmp:
        store = EmbeddedStore(tmp)
        store.initialize(extractor.identity)
        ids = [f"{i:016x}" for i in range(count)]
        store.upsert([ImageRecord(i, (f"/v/{i}.jpg",), 1, 1, 1, 1, i, 640, 480) for i in ids], vectors)
        t = time.perf_counter()
        variant_pairs(store, zip(ids, images, strict=True), embed, 0.95)
        pass_s = (time.perf_counter() - t) / count
        store.close()
    return {"variants_images": count, "variants": list(VARIANTS),
            "embed_stage_s_per_image": round(plain_s, 3), "variant_pass_s_per_image": round(pass_s, 3),
            "variant_pass_vs_embed_stage": round(pass_s / plain_s, 2),
            "projected_100k_variant_pass_h": round(pass_s * 100_000 / 3600, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--subset", type=int, default=20_000)
    parser.add_argument("--dims", type=int, default=512)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--es-url", help="group in Elasticsearch at this URL instead of the embedded store")
    parser.add_argument("--data-dir", help="keep the embedded store here; a later run of the same --size reuses it "
                                           "(its ingest_s is then null)")
    parser.add_argument("--variants", type=int, default=8, help="photos for the mirror/rotation pass (0: skip)")
    args = parser.parse_args()
    result = run(args.size, args.subset, args.dims, args.threshold, args.k, args.batch, args.es_url,
                 args.data_dir)
    if args.variants:
        result.update(variants_cost(args.variants))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
