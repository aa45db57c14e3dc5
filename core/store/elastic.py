"""Elasticsearch backend: approximate kNN on a dense_vector field, for indexes too big for one machine's RAM.

Layout: one concrete index per model identity, named after it ("image-search-gem-512-imagenet"), and the
configured name (`es_index`) is an alias to it. The identity is also kept in the mapping's `_meta`, which
is what `identity` reads; the name only keeps indices of different models apart.

Choices, and why:
- `dot_product` similarity on unit vectors (the cosine, without per-query normalisation), quantized HNSW
  (`int8_hnsw`: 4x less RAM than float) and `rescore_vector` at query time, so that hits are re-ranked and
  scored with the float vectors: the scores users see are exact cosines, not int8 estimates. A new index
  starts as `int8_flat` and becomes `int8_hnsw` at its first `finish()`, whose merge builds the graph once
  (`FLAT_WHILE_BUILDING`: 5x the ingest rate at 1M).
- Vectors are left out of `_source` (a 512-d vector is ~10 KB of JSON text per document) and read back
  from the field's doc values (`docvalue_fields`) for `vector(id)`. The price: a partial update would
  lose them, and the test server (the integ-test zip) has no `_reindex`, `update_by_query` or Painless,
  so `update` and schema migrations read the vectors back and rewrite whole documents with the bulk
  helper. `_source` is then exactly the image record, so reads take it whole: a source filter
  (`includes`) cost 0.2-0.3 ms a search at 100k x 4096-d, 12-15 % of a warm server's whole kNN search.
- Paths: `paths` holds each path's display text (a keyword array, for people and the `under` prefix),
  `path_b64` the raw bytes of each path in base64 (lossless round trips of names that are not UTF-8,
  exact lookups by path).
- The text filter is the embedded store's rule (core.paths.fold, then every word a substring of a file
  name or a folder of the image), normalised in Python: a hidden keyword field `words` holds the folded
  names and folders, and each word becomes a `*word*` wildcard on it, inside the kNN `filter` so that k
  hits still come back.
- Schema versions in the mapping's `_meta` (`schema`): opening an index of an older one migrates it
  (new fields with put_mapping, then every document rewritten in batches); a newer one is refused.
- Searches use the `knn` *query*, not the top-level `knn` section: the section runs its own search
  phase (a "DFS" round before the query phase) that cost 3-10 ms a query in bench/knn.py, more than
  the HNSW walk itself (100k x 4096-d: 14.0 ms p50 against 4.2 ms for the same query).
- Writes go through the bulk API with the document id as `_id` (re-running an ingest replaces, never
  duplicates), with backoff on 429/5xx, and no refresh per batch: a search by this store object after
  its own writes refreshes first (`get`/`get_many` are realtime anyway), `finish()` refreshes for other
  processes. The path lookup before each upsert refreshes only when the batch names a path written since
  the last refresh: a refresh per batch cut a segment (and an HNSW graph to merge) per batch, which held
  a 1M ingest to 616 docs/s.
- A large ingest (LARGE_INGEST_DOCS written since the last `finish`) pauses the index's periodic refresh,
  its replicas (Elasticsearch's advice for bulk loads: "Tune for indexing speed") and its merges, noting the previous
  settings in the mapping's `_meta` (`paused`); `finish` and `close` restore them, and so does the next
  opening when a process died before that. Upserts of 200 documents or more are sent as concurrent
  requests by `helpers.parallel_bulk`: the server builds the graph on the thread of each request.
- After a large ingest, and at a new index's first `finish`, it also starts a force merge on the server (it
  returns at once; searches go on while it runs): a kNN query walks every segment's graph, and a 100k ingest
  left 17 segments that searched 3.6x slower than one (`MERGE_SEGMENT_BYTES`). Segments stay below the 5 GB
  beyond which the server's merge policy would leave them alone, so later writes still merge as usual.
- Requires Elasticsearch 8.18 or newer (`rescore_vector`); the client is pinned to 8.x, which also talks
  to 9.x servers through their REST compatibility mode.
"""

from __future__ import annotations

import base64
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, TlsError, TransportError
from elasticsearch import (
    ApiError,
    AuthenticationException,
    AuthorizationException,
    Elasticsearch,
    NotFoundError,
    UnsupportedProductError,
    helpers,
)
from typing_extensions import override

try:  # 10x faster than json for vectors, and writes float32 in its shortest form (~40 % fewer bytes)
    from elasticsearch.serializer import OrjsonSerializer
except ImportError:  # orjson not installed: the client's json serializer turns arrays into lists
    OrjsonSerializer = None  # type: ignore[assignment,misc]

from core.config import Settings
from core.errors import UNSUPPORTED
from core.paths import display_path
from core.store.base import (
    Hit,
    IdentityMismatch,
    ImageRecord,
    ModelIdentity,
    SearchFilter,
    StoreError,
    Vectors,
    VectorStore,
    validate,
)

log = logging.getLogger(__name__)

# 1: one `path` (text) per document, with `name` and `folder`; 2: `paths`, `path_b64`, `ctime_ns`, `inode`.
SCHEMA = 2
MAX_CANDIDATES = 10_000  # Elasticsearch's limit for num_candidates, so also for k
MAX_RESULT_WINDOW = 10_000  # index.max_result_window: the most hits one search returns
# A prefix query becomes an automaton of about one state per UTF-8 byte, and the server refuses more
# than 1000 states ("input automaton is too large"); a shorter prefix only finds more candidates.
MAX_PREFIX_BYTES = 512
# Search tuning, measured with bench/knn.py on clustered unit vectors, 100k x 512-d and x 4096-d, k=10:
# 5 HNSW candidates per hit (at least 50) keep recall@10 >= 0.999 with int8; 10 per hit cost 1.2-1.9x
# the latency for at most 0.001 more recall. Then `oversample` quantized hits per hit are re-scored with
# the float vectors: 3 for int8 (recall 0.92-0.95 -> 0.999-1.0); bbq's 1-bit codes need 10 (3 gives
# 0.70-0.74, 10 gives 0.998).
CANDIDATES_PER_HIT, MIN_CANDIDATES = 5, 50
OVERSAMPLE, OVERSAMPLE_BBQ = 3.0, 10.0
# That tuning does not hold as the graph grows: at 1M x 512-d (merged, Java 25) it gave recall@10 0.945
# (issue 16). An HNSW walk needs a candidate list that grows with the index, so the candidates above are
# multiplied by 1 + log2(documents / CANDIDATES_SIZE_REFERENCE) past that size: x2 at 200k, x4.3 at 1M.
# The figures behind it: `bench/knn.py --curve`, README ("Elasticsearch at scale").
CANDIDATES_SIZE_REFERENCE = 100_000
SIZE_TTL_S = 60.0  # how long a document count tunes searches before it is counted again
# The server may apply a min score to the quantized estimate (int8 is off by up to ~0.03, bbq by more),
# so it gets a lower bar and the exact bar is applied to the re-scored hits here. A wide margin costs
# little: the k best still come back, only more of the hits below the bar travel.
SIMILARITY_MARGIN = 0.1
BULK_CHUNK = 500
# The server indexes one bulk request on one write thread, and that thread builds the HNSW graph as documents
# arrive (hot threads during a 512-d int8_hnsw ingest: 98 % of it in the graph's dot products), so one request
# at a time leaves the other cores idle: an upsert of at least 2 x PARALLEL_MIN_CHUNK documents goes out as
# BULK_THREADS concurrent requests (helpers.parallel_bulk), however few chunks of BULK_CHUNK it makes.
BULK_THREADS = 2
PARALLEL_MIN_CHUNK = 100
# Measured with 100k clustered x 512-d int8_hnsw through upserts of 500 (quiet 2-core AMD EPYC, 3 GB heap):
# one request at a time 694 docs/s, two 1,212. The graph keeps the server's ef_construction (100): 50 gave
# 1,805 docs/s at 100k and 1,387 over 1M, but recall@10 0.8955 at 1M with 217 candidates (0.911 with 400)
# against 0.998 (bench/results/elastic-knn-1m-efc50.json).
LARGE_INGEST_DOCS = 20_000  # documents written since the last finish() that make an ingest "large"
# A force merge after a large ingest aims at segments of this size. Measured (bench/duplicates.py, 100k
# planted x 512-d int8_hnsw, quiet 2-core AMD EPYC): 17 segments after the ingest, kNN in knn_many 3.08 ms a
# query; merged to one in 66 s, 0.86 ms, recall of planted pairs 0.993 pair by pair and 1.0 in groups.
# Below the merge policy's 5 GB max_merged_segment, so merged segments keep taking part in later merges.
MERGE_SEGMENT_BYTES = 4 << 30
# Path keys (base64) remembered as written since the last refresh; past this many a refresh forgets them
# (~100 bytes each: ~20 MB at most).
UNREFRESHED_KEYS_MAX = 200_000
# While a large ingest runs, segments are left unmerged (segments_per_tier PAUSED_SEGMENTS_PER_TIER instead of
# 10): every merge rebuilds HNSW graphs, and finish() merges everything once anyway. A 1M x 512-d ingest
# (bench/knn.py at ef_construction 50, quiet 2-core AMD EPYC) slowed from 1,620 to 1,387 docs/s overall once
# merges began past 600k.
PAUSED_SETTINGS = ("number_of_replicas", "auto_expand_replicas", "refresh_interval", "merge.policy.segments_per_tier")
PAUSED_SEGMENTS_PER_TIER = 100
# A new index is created with the flat form of its type (no graph) and takes its graph type at its first
# finish(), which then force-merges: the merge builds one graph over all the documents. Built as documents
# arrived, the graph cost the write threads ~2 ms of core time a document (Lucene's addGraphNode), and the force
# merge after a large ingest rebuilt most of it anyway. Measured through upserts of 500 (clustered 512-d, 2-core
# AMD EPYC, Java 25, 3 GB heap): at 100k ingest 1,119 -> 4,920 docs/s, ingest and merge 156 -> 108 s; at 1M
# 971 -> 5,128 docs/s, ingest and merge 2,120 -> 1,237 s, recall@10 0.9985 (bench/results/elastic-knn-1m.json).
# Until a merge rewrites them, flat segments are searched exhaustively (exact; p50 82 ms over 1M in 42 segments
# during that merge), and a lone flat segment, which a force merge leaves alone, stays flat until later writes
# merge it. A type changes in place only towards a graph, so an index that has one never goes back to flat.
FLAT_WHILE_BUILDING = {"hnsw": "flat", "int8_hnsw": "int8_flat", "int4_hnsw": "int4_flat", "bbq_hnsw": "bbq_flat"}
LOOKUP_CHUNK = 1000  # ids or paths per mget / terms lookup
RETRY_STATUS = (429, 502, 503, 504)
WRITE_TIMEOUT_S = 120.0  # a bulk of 500 4096-d vectors or a refresh can take longer than a search
MSEARCH_BATCH = 64  # kNN queries per _msearch in knn_many
INDEX_TYPES = ("int8_hnsw", "bbq_hnsw", "int4_hnsw", "hnsw", "int8_flat", "bbq_flat", "flat")
_ALIAS_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,199}$")

Progress = Callable[[int, int], None]  # (done, total) documents of a migration


class ExactSearchUnsupported(StoreError):
    """Exact search was asked of Elasticsearch, which searches its HNSW graph only: a usage error (HTTP 400,
    exit status 2), not an unavailable index."""

    kind = UNSUPPORTED
    title = "Exact search not available"


class ElasticStore(VectorStore):
    """The Elasticsearch `VectorStore` behind the alias `index`. See core/store/base.py for the contract.

    Opening an index of an older schema migrates it (logging at INFO and calling `progress(done, total)`).
    """

    backend = "elasticsearch"

    def __init__(
        self,
        url: str = "http://127.0.0.1:9200",
        index: str = "image-search",
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_certs: str | None = None,
        timeout_s: float = 5.0,
        index_type: str = "int8_hnsw",  # for new indices; benchmarks compare the others
        progress: Progress | None = None,
    ):
        if not _ALIAS_RE.match(index):
            raise StoreError(f"invalid Elasticsearch index name {index!r}: "
                             "use lowercase letters, digits, '-', '_' or '.'")
        if index_type not in INDEX_TYPES:
            raise StoreError(f"unknown dense_vector index type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
        self.alias = index
        self.index_type = index_type
        self.timeout_s = timeout_s
        self._progress = progress
        hosts = [u.strip() for u in url.split(",") if u.strip()]
        self.url = ",".join(_without_credentials(u) for u in hosts)  # for messages: never print a password
        try:
            # Connection errors are retried at once (3 times: milliseconds when the port is closed), a
            # timeout is not: an absent server must surface within timeout_s, not after a retry loop.
            self._es = Elasticsearch(
                hosts,
                api_key=api_key or None,
                basic_auth=(username, password or "") if username else None,
                ca_certs=ca_certs or None,
                request_timeout=timeout_s,
                max_retries=3,
                retry_on_status=RETRY_STATUS,
                retry_on_timeout=False,
                serializer=OrjsonSerializer() if OrjsonSerializer is not None else None,
            )
        except (ValueError, TypeError) as exc:
            raise StoreError(f"invalid Elasticsearch settings for {self.url!r}: {exc}") from exc
        self._writer = self._es.options(request_timeout=max(timeout_s, WRITE_TIMEOUT_S))
        self._lock = threading.RLock()
        self._identity: ModelIdentity | None = None  # cached once known: an alias never changes identity
        self._oversample = OVERSAMPLE  # set from the index's own type when its identity is read
        self._graph_type: str | None = None  # the graph type a new index takes at finish(), while it is flat
        self._dirty = False  # this object wrote since its last refresh
        self._unrefreshed: set[str] = set()  # path keys of documents written since the last refresh
        self._deleted = False  # documents deleted since the last refresh (their paths are not known here)
        self._written = 0  # documents written since the last finish()
        self._paused = False  # this object paused refresh and replicas for a large ingest
        self.bulk_threads = BULK_THREADS
        self._counted: tuple[float, int] | None = None  # (time.monotonic(), documents) for _candidates

    @classmethod
    def from_settings(cls, settings: Settings, progress: Progress | None = None) -> ElasticStore:
        """The store the settings name (es_url, es_index, credentials, es_timeout_s); nothing is sent to the
        server until first use. Raises StoreError for an invalid index name or client settings."""
        return cls(
            settings.es_url,
            settings.es_index,
            api_key=settings.es_api_key,
            username=settings.es_username,
            password=settings.es_password,
            ca_certs=settings.es_ca_certs,
            timeout_s=settings.es_timeout_s,
            progress=progress,
        )

    # -- identity ---------------------------------------------------------------------------------
    @property
    @override
    def identity(self) -> ModelIdentity | None:
        with self._lock:
            if self._identity is None:
                self._identity = self._read_identity()
            return self._identity

    @override
    def initialize(self, identity: ModelIdentity) -> None:
        with self._lock:
            current = self._read_identity()
            if current is None:
                self._create(identity)
                current = self._read_identity()
            if current is None:
                raise StoreError(f"the Elasticsearch alias {self.alias!r} at {self.url} vanished while being created")
            if current != identity:
                raise IdentityMismatch(
                    f"the Elasticsearch index {self.alias!r} at {self.url} holds vectors of {current.label()}, "
                    f"but the current settings give {identity.label()}; vectors of different models cannot be "
                    "compared. Use the same --weights and --descriptor as when it was built, or another index "
                    "name (--es-index / IMAGE_SEARCH_ES_INDEX) for this model."
                )
            self._identity = current

    # -- writes -----------------------------------------------------------------------------------
    @override
    def upsert(self, records: Sequence[ImageRecord], vectors: Vectors) -> None:
        vectors = validate(records, vectors, self._dims())
        if not records:
            return
        actions = [_index_action(self.alias, r, v) for r, v in zip(records, vectors, strict=True)]
        self._bulk(self._release_paths(records) + actions, f"store {len(records)} images")
        self._after_writes(len(actions))

    @override
    def update(self, records: Sequence[ImageRecord]) -> None:
        validate(records, None, self._dims())
        if not records:
            return
        vectors = self.vectors(r.id for r in records)
        records = [r for r in records if r.id in vectors]
        actions = [_index_action(self.alias, r, vectors[r.id]) for r in records]
        self._bulk(self._release_paths(records) + actions, f"update {len(records)} images")
        self._after_writes(len(actions))

    @override
    def delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        self._dims()
        if ids:
            actions = ({"_op_type": "delete", "_index": self.alias, "_id": i} for i in ids)
            self._deleted = True
            self._bulk(actions, f"delete {len(ids)} images")

    def finish(self) -> None:
        """Restore the settings a large ingest paused, give a new index its graph type (FLAT_WHILE_BUILDING),
        then refresh; after either, start a merge of the index's segments on the server."""
        merge = self._paused
        try:
            if self._paused:
                self._resume()
            if self._graph_type is not None:
                self._take_graph_type()
                merge = True  # also after an ingest that died before its finish(): flat segments get a graph
        finally:
            self._written = 0
            self._refresh()
        if merge:
            self._merge()

    def _take_graph_type(self) -> None:
        """Change the vector field of an index created flat to its graph type; segments written or merged
        from now on carry the graph."""
        with self._lock, self._guard("give the index its kNN graph type"):
            index, mapping = next(iter(self._es.indices.get_mapping(index=self.alias).items()))
            vector = mapping["mappings"]["properties"]["vector"]
            options = {**vector.get("index_options", {}), "type": self._graph_type}
            self._writer.indices.put_mapping(index=index, properties={"vector": {**vector, "index_options": options}})
        log.info("%s: vectors now indexed as %s", self.location(), self._graph_type)
        self._graph_type = None

    def _merge(self) -> None:
        """Start a force merge to segments of about MERGE_SEGMENT_BYTES; the server runs it as a task."""
        with self._guard("merge the index's segments"):
            stats = self._writer.indices.stats(index=self.alias, metric="store")
            size = stats["_all"]["primaries"]["store"]["size_in_bytes"]
            segments = max(1, math.ceil(size / MERGE_SEGMENT_BYTES))
            self._writer.indices.forcemerge(index=self.alias, max_num_segments=segments, wait_for_completion=False)
        log.info("%s: merging its segments into %d on the server", self.location(), segments)

    def _refresh(self) -> None:
        with self._guard("refresh the index"):
            self._writer.indices.refresh(index=self.alias, ignore_unavailable=True)
        self._dirty, self._deleted = False, False
        self._unrefreshed.clear()
        self._counted = None  # this object's own writes may have changed the size that tunes searches

    # -- reads ------------------------------------------------------------------------------------
    @override
    def get(self, image_id: str) -> ImageRecord | None:
        return self.get_many([image_id]).get(image_id)

    def get_many(self, ids: Iterable[str]) -> dict[str, ImageRecord]:
        """Realtime (mget), LOOKUP_CHUNK ids a request."""
        ids = list(dict.fromkeys(ids))
        found: dict[str, ImageRecord] = {}
        with self._guard("read image records"):
            for start in range(0, len(ids), LOOKUP_CHUNK):
                try:
                    docs = self._es.mget(index=self.alias, ids=ids[start : start + LOOKUP_CHUNK])["docs"]
                except NotFoundError as exc:  # no index yet
                    self._check_product(exc)
                    return {}
                found.update((d["_id"], _record(d)) for d in docs if d.get("found"))
        return found

    @override
    def get_by_path(self, path: str) -> ImageRecord | None:
        hits = self._search("find an image by path", query={"term": {"path_b64": _b64(path)}}, size=1)
        return _record(hits[0]) if hits else None

    @override
    def find_by_hash(self, content_hash: str) -> list[ImageRecord]:
        hits = self._search("find images by content hash", query={"term": {"hash": content_hash}},
                            size=MAX_RESULT_WINDOW, sort=["_doc"])
        return sorted((_record(h) for h in hits), key=lambda r: r.id)

    @override
    def vector(self, image_id: str) -> np.ndarray | None:
        return self.vectors([image_id]).get(image_id)

    def vectors(self, ids: Iterable[str]) -> dict[str, np.ndarray]:
        """From doc values (vectors are not in `_source`), LOOKUP_CHUNK ids a search."""
        ids = list(dict.fromkeys(ids))
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(ids), LOOKUP_CHUNK):
            chunk = ids[start : start + LOOKUP_CHUNK]
            hits = self._search("read vectors", query={"ids": {"values": chunk}}, size=len(chunk), source=False,
                                docvalue_fields=["vector"])
            found.update((h["_id"], _vector(h)) for h in hits)
        return found

    @override
    def count(self) -> int:
        self._fresh()
        with self._guard("count the images"):
            return int(self._es.count(index=self.alias, ignore_unavailable=True)["count"])

    def records(self, under: str | None = None) -> Iterator[ImageRecord]:
        """Scrolled (one consistent view while paging), sorted by the display text of the paths."""
        query: dict[str, Any] = {"match_all": {}}
        prefix = b""
        if under is not None:
            # Display text finds the candidates (a prefix ending in "/" decodes the same alone or in a
            # longer path; cut to the server's limit on prefix length, it finds more); the raw bytes
            # then decide, since distinct bytes can display alike.
            prefix = os.fsencode(under).rstrip(b"/") + b"/"
            shown = display_path(os.fsdecode(prefix)).encode()[:MAX_PREFIX_BYTES].decode("utf-8", "ignore")
            query = {"prefix": {"paths": shown}}
        self._fresh()
        with self._guard("list the images"):
            for doc in helpers.scan(self._es, query={"query": query, "sort": [{"paths": "asc"}]},
                                    index=self.alias, size=1000, preserve_order=True, scroll="5m",
                                    ignore_unavailable=True):
                record = _record(doc)
                if not prefix or any(os.fsencode(p).startswith(prefix) for p in record.paths):
                    yield record

    @override
    def knn(self, vector: np.ndarray, k: int, filters: SearchFilter | None = None) -> list[Hit]:
        return self.knn_many(np.asarray(vector, dtype=np.float32).reshape(1, -1), k, filters)[0]

    def knn_many(self, vectors: Vectors, k: int, filters: SearchFilter | None = None) -> list[list[Hit]]:
        """MSEARCH_BATCH kNN queries per `_msearch` request."""
        filters = filters or SearchFilter()
        if filters.exact:
            raise ExactSearchUnsupported("exact search (--exact, exact=true) is available on the embedded index "
                                         "only; Elasticsearch searches its HNSW graph: search without it")
        queries = np.asarray(vectors, dtype=np.float32)
        if queries.ndim != 2:
            raise StoreError(f"expected query vectors of shape (m, dims), got {queries.shape}")
        k = min(k, MAX_CANDIDATES)
        if k <= 0 or self.identity is None or (filters.ids is not None and not filters.ids):
            return [[] for _ in queries]  # no index yet, or nothing may match
        self._fresh()
        results: list[list[Hit]] = [[] for _ in queries]
        pending = [(n, k) for n in range(len(queries))]
        while pending:
            # A max score cannot be pushed to the server: ask for more neighbours until k of them pass
            # it, the index has no more, or the server's limit is reached.
            again = []
            for start in range(0, len(pending), MSEARCH_BATCH):
                batch = pending[start : start + MSEARCH_BATCH]
                searches: list[dict[str, Any]] = []
                for n, want in batch:
                    searches += [{"index": self.alias},
                                 {"query": {"knn": self._knn_clause(queries[n], want, filters)}, "size": want}]
                with self._guard("search for similar images"):
                    responses = self._es.msearch(searches=searches)["responses"]
                for (n, want), response in zip(batch, responses, strict=True):
                    if "error" in response:
                        raise StoreError(f"Elasticsearch at {self.url} could not search for similar images: "
                                         f"{_reason(response['error'])}")
                    docs = response["hits"]["hits"]
                    hits = [Hit(_record(d), _cosine(d["_score"])) for d in docs]
                    passed = [h for h in hits if filters.accepts_score(h.score)]
                    if len(passed) >= k or len(docs) < want or want >= MAX_CANDIDATES or filters.max_score is None:
                        results[n] = passed[:k]
                    else:
                        again.append((n, min(MAX_CANDIDATES, want * 4)))
            pending = again
        return results

    @override
    def location(self) -> str:
        return f"{self.url} index {self.alias}"

    @override
    def close(self) -> None:
        try:
            if self._paused:
                self._resume()
        except StoreError as exc:  # closing must not fail: the note in `_meta` lets the next opening restore
            log.warning("could not restore refresh after a large ingest (the next opening will): %s", exc)
        finally:
            self._es.close()

    # -- internals --------------------------------------------------------------------------------
    def index_name(self, identity: ModelIdentity) -> str:
        """The concrete index for `identity`: index names allow only lowercase letters, digits and -_."""
        weights = re.sub(r"[^a-z0-9_-]+", "-", identity.weights.lower()).strip("-_") or "weights"
        return f"{self.alias}-{identity.descriptor}-{identity.dims}-{weights}"[:255]

    def _dims(self) -> int:
        """The index's dimensions; StoreError before `initialize`."""
        identity = self.identity
        if identity is None:
            raise StoreError(f"the Elasticsearch index {self.alias!r} at {self.url} is not initialised")
        return identity.dims

    def _fresh(self) -> None:
        """Refresh before a search when this object has written since: its own writes are then visible."""
        if self._dirty:
            self._refresh()

    def _release_paths(self, records: Sequence[ImageRecord]) -> list[dict[str, Any]]:
        """Bulk actions that take the records' paths from the other images holding them: each such
        image is rewritten without them (its vector read back), or deleted when no path is left."""
        keys = [_b64(p) for r in records for p in r.paths]
        ours, taken = {r.id for r in records}, set(keys)
        if self._deleted or not taken.isdisjoint(self._unrefreshed):
            self._refresh()  # the lookup below must see this object's own writes to these paths
        actions = []
        for start in range(0, len(keys), LOOKUP_CHUNK):
            hits = self._search("look up paths", query={"terms": {"path_b64": keys[start : start + LOOKUP_CHUNK]}},
                                size=MAX_RESULT_WINDOW, docvalue_fields=["vector"], fresh=False)
            for hit in hits:
                if hit["_id"] in ours:
                    continue
                old = _record(hit)
                left = tuple(p for p in old.paths if _b64(p) not in taken)
                if left:
                    moved = ImageRecord(**{**old.to_dict(), "paths": left})
                    actions.append(_index_action(self.alias, moved, _vector(hit)))
                    self._unrefreshed.update(_b64(p) for p in left)
                else:
                    actions.append({"_op_type": "delete", "_index": self.alias, "_id": old.id})
        self._unrefreshed |= taken
        return actions

    def _after_writes(self, written: int) -> None:
        """Count written documents: pause refresh and replicas once an ingest is large; forget path keys
        (by refreshing) once too many are remembered."""
        self._written += written
        if self._written >= LARGE_INGEST_DOCS and not self._paused:
            self._pause()
        if len(self._unrefreshed) > UNREFRESHED_KEYS_MAX:
            self._refresh()

    def _pause(self) -> None:
        """Turn off periodic refresh, replicas and merges for a large ingest, noting the previous values in
        `_meta`."""
        with self._lock, self._guard("pause refresh for a large ingest"):
            index, settings = next(iter(self._es.indices.get_settings(index=self.alias, flat_settings=True).items()))
            current = settings["settings"]
            meta = self._es.indices.get_mapping(index=index)[index]["mappings"].get("_meta", {})
            if "paused" not in meta:  # another process may have paused it already: keep its note
                saved = {name: current.get(f"index.{name}") for name in PAUSED_SETTINGS}
                self._writer.indices.put_mapping(index=index, meta={**meta, "paused": saved})
            self._writer.indices.put_settings(index=index, settings={
                "index": {"refresh_interval": "-1", "number_of_replicas": 0, "auto_expand_replicas": False,
                          "merge.policy.segments_per_tier": PAUSED_SEGMENTS_PER_TIER}})
        self._paused = True
        log.info("large ingest into %s: periodic refresh, replicas and merges paused until it finishes",
                 self.location())

    def _resume(self) -> None:
        """Restore the settings noted by `_pause` (None: the server's default) and drop the note."""
        self._paused = False
        with self._lock, self._guard("restore refresh after a large ingest"):
            index, mapping = next(iter(self._es.indices.get_mapping(index=self.alias).items()))
            self._restore(index, mapping["mappings"].get("_meta", {}))

    def _restore(self, index: str, meta: dict[str, Any]) -> None:
        saved = meta.get("paused")
        if saved is None:
            return
        self._writer.indices.put_settings(index=index, settings={"index": {n: saved.get(n) for n in PAUSED_SETTINGS}})
        self._writer.indices.put_mapping(index=index, meta={k: v for k, v in meta.items() if k != "paused"})

    def _read_identity(self) -> ModelIdentity | None:
        with self._lock, self._guard("read the index identity"):
            try:
                aliases = self._es.indices.get_alias(name=self.alias)
            except NotFoundError as exc:
                self._check_product(exc)
                return None
            if len(aliases) != 1:
                raise StoreError(f"the Elasticsearch alias {self.alias!r} at {self.url} points to "
                                 f"{len(aliases)} indices ({', '.join(sorted(aliases))}); it must point to one")
            index = next(iter(aliases))
            mappings = self._es.indices.get_mapping(index=index)[index]["mappings"]
            meta = mappings.get("_meta", {})
            if "identity" not in meta:
                raise StoreError(f"the Elasticsearch index {index!r} at {self.url} was not made by image-search "
                                 "(no model identity in its mapping); use another --es-index")
            schema = int(meta.get("schema", 0))
            if schema > SCHEMA:
                raise StoreError(f"the Elasticsearch index {index!r} at {self.url} was written by a newer "
                                 f"image-search (schema {schema}; this version knows up to {SCHEMA}): upgrade "
                                 "image-search, or use another --es-index")
            if schema < SCHEMA:
                self._migrate(index, meta, schema)
            if "paused" in meta and not self._paused:
                log.warning("the Elasticsearch index %s at %s still has refresh and replicas paused by an ingest "
                            "that did not finish; restoring them", index, self.url)
                self._restore(index, meta)
        # The index's own type, not self.index_type (which is for new indices), sets the re-scoring.
        index_type = mappings["properties"]["vector"].get("index_options", {}).get("type", "")
        self._oversample = OVERSAMPLE_BBQ if index_type.startswith("bbq") else OVERSAMPLE
        wanted = meta.get("index_type", index_type)
        self._graph_type = wanted if wanted != index_type else None
        return ModelIdentity.from_dict(meta["identity"])

    def _migrate(self, index: str, meta: dict[str, Any], schema: int) -> None:
        """Bring an index of schema 1 to SCHEMA: add the new fields to the mapping, rewrite every document
        in batches (scrolled, vectors from doc values), then record the schema. Not atomic, but safe to
        repeat: an interrupted migration is finished at the next opening (documents already rewritten are
        written again, unchanged)."""
        if schema != 1:
            raise StoreError(f"the Elasticsearch index {index!r} at {self.url} has an unknown schema {schema}")
        properties = _mappings(ModelIdentity.from_dict(meta["identity"]), self.index_type)["properties"]
        self._writer.indices.put_mapping(index=index, properties={
            name: properties[name] for name in ("paths", "path_b64", "ctime_ns", "inode")})
        self._writer.indices.refresh(index=index)
        total = int(self._es.count(index=index)["count"])
        log.info("migrating the Elasticsearch index %s at %s from schema 1 to %d: %d images", index, self.url,
                 SCHEMA, total)
        done = 0
        batch: list[dict[str, Any]] = []
        for doc in helpers.scan(self._es, query={"query": {"match_all": {}}, "docvalue_fields": ["vector"]},
                                index=index, size=BULK_CHUNK, scroll="10m"):
            batch.append(_index_action(index, _record(doc), _vector(doc)))
            if len(batch) == BULK_CHUNK:
                done += self._migrated(batch, done, total)
                batch = []
        done += self._migrated(batch, done, total)
        self._writer.indices.refresh(index=index)
        self._writer.indices.put_mapping(index=index, meta={**meta, "schema": SCHEMA})
        log.info("migrated %d images", done)

    def _migrated(self, actions: list[dict[str, Any]], done: int, total: int) -> int:
        if not actions:
            return 0
        self._bulk(actions, "migrate the index", alias=False)
        if self._progress is not None:
            self._progress(done + len(actions), total)
        return len(actions)

    def _create(self, identity: ModelIdentity) -> None:
        name = self.index_name(identity)
        with self._guard("create the index"):
            if self._es.indices.exists(index=self.alias):
                raise StoreError(f"{self.alias!r} at {self.url} is an existing index, not an alias made by "
                                 "image-search; use another --es-index or delete that index")
            try:
                self._writer.indices.create(index=name, mappings=_mappings(identity, self.index_type),
                                            settings={"number_of_shards": 1, "auto_expand_replicas": "0-1"})
            except ApiError as exc:
                # Another process created it first; _read_identity checks what it holds.
                if exc.error != "resource_already_exists_exception":
                    raise
            self._writer.indices.update_aliases(actions=[{"add": {"index": name, "alias": self.alias,
                                                                  "is_write_index": True}}])

    def _check_product(self, exc: ApiError) -> None:
        """The client checks the product header on successes only; a proxy answering 404 is no index."""
        if exc.meta.headers.get("x-elastic-product") != "Elasticsearch":
            raise StoreError(f"the server at {self.url} is not Elasticsearch (it answered HTTP {exc.status_code} "
                             "without Elasticsearch's product header)")

    def _candidates(self, k: int) -> int:
        """HNSW candidates (num_candidates) for k hits in an index of this many documents: see
        CANDIDATES_SIZE_REFERENCE. Never more than the server's limit MAX_CANDIDATES."""
        growth = 1.0 + math.log2(max(1.0, self._size() / CANDIDATES_SIZE_REFERENCE))
        return min(MAX_CANDIDATES, math.ceil(max(MIN_CANDIDATES, CANDIDATES_PER_HIT * k) * growth))

    def _size(self) -> int:
        """The index's document count, counted again at most every SIZE_TTL_S seconds (one request)."""
        now = time.monotonic()
        if self._counted is None or now - self._counted[0] > SIZE_TTL_S:
            with self._guard("count the images"):
                count = int(self._es.count(index=self.alias, ignore_unavailable=True)["count"])
            self._counted = (now, count)
        return self._counted[1]

    def _knn_clause(self, query: np.ndarray, k: int, filters: SearchFilter) -> dict[str, Any]:
        clause: dict[str, Any] = {
            "field": "vector",
            "query_vector": query,
            "k": k,
            "num_candidates": self._candidates(k),
            "rescore_vector": {"oversample": self._oversample},
        }
        # Words are folded already (core.paths.fold), as the `words` field is.
        conditions: list[dict[str, Any]] = [{"wildcard": {"words": {"value": f"*{_escape_wildcard(w)}*"}}}
                                            for w in filters.words()]
        if filters.ids is not None:
            conditions.append({"ids": {"values": sorted(filters.ids)}})
        if conditions:
            clause["filter"] = {"bool": {"filter": conditions}}
        if filters.min_score is not None:
            clause["similarity"] = filters.min_score - SIMILARITY_MARGIN  # a raw dot product, not a _score
        return clause

    def _search(self, action: str, fresh: bool = True, **kwargs: Any) -> list[dict[str, Any]]:
        if fresh:
            self._fresh()
        with self._guard(action):
            response = self._es.search(index=self.alias, ignore_unavailable=True, track_total_hits=False, **kwargs)
        return response["hits"]["hits"]

    def _bulk(self, actions: Iterable[dict[str, Any]], action: str, alias: bool = True) -> None:
        failed: list[dict[str, Any]] = []
        self._dirty = True
        with self._guard(action):
            threads = min(self.bulk_threads, len(actions) // PARALLEL_MIN_CHUNK) if isinstance(actions, list) else 1
            if threads > 1:
                # parallel_bulk does not retry: items refused as busy go once more through streaming_bulk.
                retry = []
                results = helpers.parallel_bulk(self._writer, actions, thread_count=threads,
                                                chunk_size=min(BULK_CHUNK, math.ceil(len(actions) / threads)),
                                                raise_on_error=False, require_alias=alias)
                for original, (ok, item) in zip(actions, results, strict=True):
                    op, result = next(iter(item.items()))
                    if not ok and result.get("status") in RETRY_STATUS:
                        retry.append(original)
                    elif not ok and not (op == "delete" and result.get("status") == 404):
                        failed.append(result)
                actions = retry
            for ok, item in helpers.streaming_bulk(
                self._writer, actions, chunk_size=BULK_CHUNK, raise_on_error=False, max_retries=4,
                initial_backoff=0.5, max_backoff=8, retry_on_status=RETRY_STATUS, yield_ok=False,
                require_alias=alias,  # never let a write auto-create an index with a guessed mapping
            ):
                op, result = next(iter(item.items()))
                if not ok and not (op == "delete" and result.get("status") == 404):
                    failed.append(result)
        if failed:
            raise StoreError(f"Elasticsearch at {self.url} could not {action}: {len(failed)} failed, "
                             f"the first because {_reason(failed[0].get('error'))}")

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn the client's exceptions into StoreError with a message a user can act on."""
        try:
            yield
        except StoreError:
            raise
        except TlsError as exc:
            raise StoreError(f"TLS error talking to Elasticsearch at {self.url} (check es_ca_certs): "
                             f"{exc.message}") from exc
        except ConnectionTimeout as exc:
            raise StoreError(f"Elasticsearch at {self.url} did not answer within {self.timeout_s:g} s "
                             f"when asked to {action}") from exc
        except TransportConnectionError as exc:
            raise StoreError(f"cannot reach Elasticsearch at {self.url} to {action}: is the server running? "
                             f"({exc.message})") from exc
        except (AuthenticationException, AuthorizationException) as exc:
            raise StoreError(f"Elasticsearch at {self.url} refused to {action}: {_reason(exc.body)} (check "
                             "es_api_key or es_username/es_password)") from exc
        except UnsupportedProductError as exc:
            raise StoreError(f"the server at {self.url} is not Elasticsearch") from exc
        except ApiError as exc:
            raise StoreError(f"Elasticsearch at {self.url} could not {action}: HTTP {exc.status_code}, "
                             f"{_reason(exc.body)}") from exc
        except TransportError as exc:
            raise StoreError(f"Elasticsearch at {self.url} could not {action}: {exc}") from exc


def _mappings(identity: ModelIdentity, index_type: str) -> dict[str, Any]:
    return {
        "dynamic": "strict",  # a typo in a field name fails loudly instead of growing the mapping
        "_meta": {"app": "image-search", "schema": SCHEMA, "identity": identity.to_dict(), "index_type": index_type},
        "_source": {"excludes": ["vector", "words"]},
        "properties": {
            "paths": {"type": "keyword"},  # display text of each path (U+FFFD for undecodable bytes)
            "path_b64": {"type": "keyword"},  # raw bytes of each path, base64: lossless
            "words": {"type": "keyword", "doc_values": False},  # folded names and folders, for `text`
            "size": {"type": "long"},
            "mtime_ns": {"type": "long"},
            "ctime_ns": {"type": "long"},
            "inode": {"type": "long"},
            "hash": {"type": "keyword"},
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            "vector": {
                "type": "dense_vector",
                "dims": identity.dims,
                "index": True,
                "similarity": "dot_product",
                "index_options": {"type": FLAT_WHILE_BUILDING.get(index_type, index_type)},
            },
        },
    }


def _document(record: ImageRecord, vector: np.ndarray) -> dict[str, Any]:
    return {
        "paths": [display_path(p) for p in record.paths],
        "path_b64": [_b64(p) for p in record.paths],
        "words": record.folded_fields(),
        "size": record.size,
        "mtime_ns": record.mtime_ns,
        "ctime_ns": record.ctime_ns,
        "inode": record.inode,
        "hash": record.hash,
        "width": record.width,
        "height": record.height,
        "vector": np.ascontiguousarray(vector, dtype=np.float32),
    }


def _index_action(index: str, record: ImageRecord, vector: np.ndarray) -> dict[str, Any]:
    return {"_op_type": "index", "_index": index, "_id": record.id, "_source": _document(record, vector)}


def _record(doc: dict[str, Any]) -> ImageRecord:
    """The record of a document of schema 2, or of schema 1 (one `path`; ctime and inode unknown: 0)."""
    s = doc["_source"]
    paths = tuple(os.fsdecode(base64.b64decode(b)) for b in s["path_b64"]) if "path_b64" in s else (s["path"],)
    return ImageRecord(doc["_id"], paths, s["size"], s["mtime_ns"], s.get("ctime_ns", 0), s.get("inode", 0),
                       s["hash"], s["width"], s["height"])


def _vector(doc: dict[str, Any]) -> np.ndarray:
    return np.asarray(doc["fields"]["vector"][0], dtype=np.float32)


def _b64(path: str) -> str:
    return base64.b64encode(os.fsencode(path)).decode("ascii")


def _cosine(score: float) -> float:
    """Elasticsearch reports (1 + dot) / 2 for dot_product so that scores are positive."""
    return float(np.clip(2.0 * score - 1.0, -1.0, 1.0))


def _escape_wildcard(word: str) -> str:
    return re.sub(r"([\\*?])", r"\\\1", word)


def _reason(error: Any) -> str:
    """The most specific reason in an Elasticsearch error body."""
    if isinstance(error, dict):
        inner = error.get("error", error)
        if isinstance(inner, dict):
            causes = inner.get("root_cause") or [inner]
            cause = causes[0] if isinstance(causes[0], dict) else inner
            kind, reason = cause.get("type", ""), cause.get("reason", "")
            return f"{kind}: {reason}" if kind and reason else str(reason or kind or inner)
        return str(inner)
    return str(error)


def _without_credentials(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=netloc).geturl()
