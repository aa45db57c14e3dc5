"""HTTP API throughput and latency on a 1,000-image index: GET /api/images/<id>/similar and POST /api/search.

The server is the embeddable ApiServer (werkzeug, threaded) in this process, as the desktop app runs it.
The load comes from a second process over loopback, from a few keep-alive connections, and is bounded
both in requests and in seconds. Prints one JSON object.

The index holds real records (hard links to a few real photos, so every path is distinct and every
thumbnail and file route works) with random unit vectors: /similar costs the same as on real vectors, and
building it takes a second instead of 1,000 VGG16 passes. /search runs the real VGG16 graph (random
weights: the same computation as the ImageNet ones).

    python bench/api.py [--images 1000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "coins", "moon"]


# -- the load: runs in a second process ------------------------------------------------------------------
def load(port: int, method: str, paths: list[str], body: bytes | None, headers: dict, concurrency: int,
         max_requests: int, max_seconds: float, out) -> None:
    """Send requests from `concurrency` keep-alive connections until either bound; report the latencies."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    issued = 0
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        nonlocal issued
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if issued >= max_requests or time.monotonic() > deadline:
                    break
                issued += 1
                path = paths[issued % len(paths)]
            started = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[response.status] = statuses.get(response.status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.send({"latencies": latencies, "statuses": statuses, "wall_s": time.perf_counter() - started})
    out.close()


def run_load(port: int, method: str, paths: list[str], body: bytes | None, headers: dict, concurrency: int,
             max_requests: int, max_seconds: float) -> dict:
    context = multiprocessing.get_context("spawn")  # never fork a process that holds TensorFlow threads
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=load, args=(port, method, paths, body, headers, concurrency, max_requests,
                                                 max_seconds, sender))
    process.start()
    sender.close()
    result = receiver.recv()
    process.join(30)
    latencies = sorted(result["latencies"])
    ms = [x * 1000 for x in latencies]
    cuts = statistics.quantiles(ms, n=100) if len(ms) >= 2 else ms * 99
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "statuses": {str(k): v for k, v in sorted(result["statuses"].items())},
        "wall_s": round(result["wall_s"], 2),
        "requests_per_s": round(len(latencies) / result["wall_s"], 1),
        "p50_ms": round(statistics.median(ms), 2),
        "p90_ms": round(cuts[89], 2),
        "p99_ms": round(cuts[98], 2),
    }


# -- the index and the server ----------------------------------------------------------------------------
def build_index(root: Path, count: int):
    """An engine whose index holds `count` real records (hard links to a few photos) with random vectors."""
    import hashlib

    import numpy as np
    from PIL import Image

    from core.config import Settings
    from core.engine import Engine
    from core.store import new_image_id
    from core.store.base import ImageRecord
    from tests.photos import write_photos

    photos = write_photos(root / "photos", PHOTOS)
    links = root / "links"
    links.mkdir()
    records = []
    for n in range(count):
        source = photos[n % len(photos)]
        path = links / f"{n:04d}-{source.name}"
        os.link(source, path)
        path = Path(os.path.realpath(path))
        stat = path.stat()
        with Image.open(path) as image:
            width, height = image.size
        records.append(ImageRecord(id=new_image_id(), paths=(str(path),), ctime_ns=0, inode=0,
                                   size=stat.st_size, mtime_ns=stat.st_mtime_ns,
                                   hash=hashlib.blake2b(str(n).encode(), digest_size=16).hexdigest(),
                                   width=width, height=height))
    settings = Settings(data_dir=str(root / "data"), weights="random", api_port=0)
    engine = Engine(settings)
    engine.store.initialize(engine.identity)
    vectors = np.random.default_rng(0).standard_normal((count, engine.identity.dims)).astype(np.float32)
    engine.store.upsert(records, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    engine.store.finish()
    return engine, records, photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0, help="upper bound per scenario")
    parser.add_argument("--similar-requests", type=int, default=3000)
    parser.add_argument("--search-requests", type=int, default=60)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import base64

    from core.server import ApiServer

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        started = time.perf_counter()
        engine, records, photos = build_index(Path(tmp), args.images)
        build_s = time.perf_counter() - started
        server = ApiServer(engine, engine.settings)
        server.start()
        try:
            similar_paths = [f"/api/images/{r.id}/similar?k=10" for r in records]
            image = photos[1].read_bytes()
            query = json.dumps({"image": base64.b64encode(image).decode(), "k": 10}).encode()
            query_desc = f"JSON {{image: base64, k: 10}} of {photos[1].name}, {len(image)} bytes ({len(query)} sent)"
            json_headers = {"Content-Type": "application/json"}
            started = time.perf_counter()
            engine.extractor()  # the first search would otherwise include building VGG16
            model_s = time.perf_counter() - started
            # Warm-up: first requests (thread start, imports, caches) are not what is measured.
            run_load(server.port, "GET", similar_paths[:20], None, {}, 1, 20, 10)
            run_load(server.port, "POST", ["/api/search"], query, json_headers, 1, 2, 30)

            scenarios = {}
            for concurrency in (1, 4):
                scenarios[f"similar_c{concurrency}"] = run_load(
                    server.port, "GET", similar_paths, None, {}, concurrency, args.similar_requests, args.seconds)
            for concurrency in (1, 2):
                scenarios[f"search_c{concurrency}"] = run_load(
                    server.port, "POST", ["/api/search"], query, json_headers, concurrency, args.search_requests,
                    args.seconds)
        finally:
            server.stop()
            engine.close()

    print(json.dumps({
        "benchmark": "http-api",
        "index_images": args.images,
        "server": "ApiServer (werkzeug threaded) in the benchmark process; load from a second process, loopback",
        "search_request": query_desc,
        "similar_request": "GET /api/images/<id>/similar?k=10, ids cycling through the index",
        "model": "VGG16 gem 512-d, random weights (same computation as ImageNet weights)",
        "cpu_count": os.cpu_count(),
        "load_avg_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "python": platform.python_version(),
        "index_build_s": round(build_s, 2),
        "model_build_s": round(model_s, 2),
        "scenarios": scenarios,
    }, indent=2))


if __name__ == "__main__":
    main()
