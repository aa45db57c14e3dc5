"""Elasticsearch backend: approximate kNN on a dense_vector field, for indexes too big for one machine's RAM.

Layout: one concrete index per model identity, named after it ("image-search-gem-512-imagenet"), and the
configured name (`es_index`) is an alias to it. The identity is also kept in the mapping's `_meta`, which
is what `identity` reads; the name only keeps indices of different models apart.

Choices, and why:
- `dot_product` similarity on unit vectors (the cosine, without per-query normalisation), quantized HNSW
  (`int8_hnsw`: 4x less RAM than float) and `rescore_vector` at query time, so that hits are re-ranked and
  scored with the float vectors: the scores users see are exact cosines, not int8 estimates.
- Vectors are left out of `_source` (a 512-d vector is ~10 KB of JSON text per document) and read back
  from the field's doc values (`docvalue_fields`) for `vector(id)` and `near_pairs`. The price: the index
  cannot be rebuilt with `_reindex` or updated partially; it is rebuilt from the images instead.
  `_source` is then exactly the image record, so reads take it whole: a source filter (`includes`) cost
  0.2-0.3 ms a search at 100k x 4096-d, 12-15 % of a warm server's whole kNN search.
- The text filter mirrors the embedded store exactly (every word must be a case-insensitive substring of
  the file name or the folder): a hidden keyword field `words` holds the casefolded name and folder, and
  each word becomes a `*word*` wildcard on it, inside the kNN `filter` so that k hits still come back.
- Searches use the `knn` *query*, not the top-level `knn` section: the section runs its own search
  phase (a "DFS" round before the query phase) that cost 3-10 ms a query in bench/knn.py, more than
  the HNSW walk itself (100k x 4096-d: 14.0 ms p50 against 4.2 ms for the same query).
- Writes go through the bulk API with the document id as `_id` (re-running an ingest replaces, never
  duplicates), with backoff on 429/5xx, and no refresh per batch: `finish()` refreshes once. So reads
  other than `get` (a realtime lookup) see new writes after `finish()`, or the server's 1 s refresh.
- Requires Elasticsearch 8.18 or newer (`rescore_vector`); the client is pinned to 8.x, which also talks
  to 9.x servers through their REST compatibility mode.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
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

try:  # 10x faster than json for vectors, and writes float32 in its shortest form (~40 % fewer bytes)
    from elasticsearch.serializer import OrjsonSerializer
except ImportError:  # orjson not installed: the client's json serializer turns arrays into lists
    OrjsonSerializer = None  # type: ignore[assignment,misc]

from core.config import Settings
from core.store.base import Hit, IdentityMismatch, ImageRecord, ModelIdentity, SearchFilter, StoreError

SCHEMA = 1  # bump when the mapping changes in a way old indices cannot serve
MAX_CANDIDATES = 10_000  # Elasticsearch's limit for num_candidates, so also for k
# Search tuning, measured with bench/knn.py on clustered unit vectors, 100k x 512-d and x 4096-d, k=10:
# 5 HNSW candidates per hit (at least 50) keep recall@10 >= 0.999 with int8; 10 per hit cost 1.2-1.9x
# the latency for at most 0.001 more recall. Then `oversample` quantized hits per hit are re-scored with
# the float vectors: 3 for int8 (recall 0.92-0.95 -> 0.999-1.0); bbq's 1-bit codes need 10 (3 gives
# 0.70-0.74, 10 gives 0.998).
CANDIDATES_PER_HIT, MIN_CANDIDATES = 5, 50
OVERSAMPLE, OVERSAMPLE_BBQ = 3.0, 10.0
# The server may apply a min score to the quantized estimate (int8 is off by up to ~0.03, bbq by more),
# so it gets a lower bar and the exact bar is applied to the re-scored hits here. A wide margin costs
# little: the k best still come back, only more of the hits below the bar travel.
SIMILARITY_MARGIN = 0.1
BULK_CHUNK = 500
RETRY_STATUS = (429, 502, 503, 504)
WRITE_TIMEOUT_S = 120.0  # a bulk of 500 4096-d vectors or a refresh can take longer than a search
PAIR_BATCH = 64  # kNN queries per _msearch in near_pairs
PAIR_K = 16  # neighbours asked for per image in near_pairs; more when all of them pass the threshold
RECORD_FIELDS = ("path", "name", "folder", "size", "mtime_ns", "hash", "width", "height")
INDEX_TYPES = ("int8_hnsw", "bbq_hnsw", "int4_hnsw", "hnsw", "int8_flat", "bbq_flat", "flat")
_ALIAS_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,199}$")


class ElasticStore:
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
    ):
        if not _ALIAS_RE.match(index):
            raise StoreError(f"invalid Elasticsearch index name {index!r}: "
                             "use lowercase letters, digits, '-', '_' or '.'")
        if index_type not in INDEX_TYPES:
            raise StoreError(f"unknown dense_vector index type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
        self.alias = index
        self.index_type = index_type
        self.timeout_s = timeout_s
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
        self._lock = threading.Lock()
        self._identity: ModelIdentity | None = None  # cached once known: an alias never changes identity
        self._oversample = OVERSAMPLE  # set from the index's own type when its identity is read

    @classmethod
    def from_settings(cls, settings: Settings) -> ElasticStore:
        return cls(
            settings.es_url,
            settings.es_index,
            api_key=settings.es_api_key,
            username=settings.es_username,
            password=settings.es_password,
            ca_certs=settings.es_ca_certs,
            timeout_s=settings.es_timeout_s,
        )

    # -- identity ---------------------------------------------------------------------------------
    @property
    def identity(self) -> ModelIdentity | None:
        with self._lock:
            if self._identity is None:
                self._identity = self._read_identity()
            return self._identity

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
    def upsert(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> None:
        if len(records) == 0:
            return
        identity = self.identity
        if identity is None:
            raise StoreError(f"the Elasticsearch index {self.alias!r} at {self.url} is not initialised")
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(records), identity.dims):
            raise StoreError(f"expected {len(records)} vectors of {identity.dims} dimensions, got {vectors.shape}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms) & (norms > 0)):
            raise StoreError("cannot index a zero or non-finite vector")
        # dot_product fields reject vectors whose length is not 1 within float precision: renormalise
        # so that float32 rounding upstream can never fail a bulk.
        vectors = vectors / norms
        actions = (
            {"_op_type": "index", "_index": self.alias, "_id": r.id, "_source": _document(r, v)}
            for r, v in zip(records, vectors, strict=True)
        )
        self._bulk(actions, f"store {len(records)} images")

    def delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        if ids and self.identity is not None:
            actions = ({"_op_type": "delete", "_index": self.alias, "_id": i} for i in ids)
            self._bulk(actions, f"delete {len(ids)} images")

    def finish(self) -> None:
        with self._guard("refresh the index"):
            self._writer.indices.refresh(index=self.alias, ignore_unavailable=True)

    # -- reads ------------------------------------------------------------------------------------
    def get(self, image_id: str) -> ImageRecord | None:
        with self._guard("read an image record"):
            try:
                doc = self._es.get(index=self.alias, id=image_id)
            except NotFoundError as exc:  # no such document, or no index yet
                self._check_product(exc)
                return None
        return _record(doc)

    def get_by_path(self, path: str) -> ImageRecord | None:
        hits = self._search("find an image by path", query={"term": {"path": path}}, size=1)
        return _record(hits[0]) if hits else None

    def vector(self, image_id: str) -> np.ndarray | None:
        hits = self._search("read a vector", query={"ids": {"values": [image_id]}}, size=1, source=False,
                            docvalue_fields=["vector"])
        return _vector(hits[0]) if hits else None

    def count(self) -> int:
        with self._guard("count the images"):
            return int(self._es.count(index=self.alias, ignore_unavailable=True)["count"])

    def records(self, under: str | None = None) -> Iterator[ImageRecord]:
        query: dict[str, Any] = {"match_all": {}}
        if under is not None:
            # Paths are the indexing machine's real paths, so its separator, as in the embedded store.
            query = {"prefix": {"path": under.rstrip(os.sep) + os.sep}}
        with self._guard("list the images"):
            # Sorted by path like the embedded store; scroll keeps one consistent view while we page.
            for doc in helpers.scan(self._es, query={"query": query, "sort": [{"path": "asc"}]},
                                    index=self.alias, size=1000, preserve_order=True, scroll="5m",
                                    ignore_unavailable=True):
                yield _record(doc)

    def knn(self, vector: np.ndarray, k: int, filters: SearchFilter | None = None) -> list[Hit]:
        filters = filters or SearchFilter()
        k = min(k, MAX_CANDIDATES)
        if k <= 0 or self.identity is None:  # no index yet: nothing to find
            return []
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        want = k
        while True:
            # A max score cannot be pushed to the server: ask for more neighbours until k of them pass
            # it, the index has no more, or the server's limit is reached.
            docs = self._search("search for similar images", query={"knn": self._knn_clause(query, want, filters)},
                                size=want)
            hits = [Hit(_record(d), _cosine(d["_score"])) for d in docs]
            passed = [h for h in hits if filters.accepts_score(h.score)]
            if len(passed) >= k or len(docs) < want or want >= MAX_CANDIDATES or filters.max_score is None:
                return passed[:k]
            want = min(MAX_CANDIDATES, want * 4)

    def near_pairs(self, threshold: float) -> Iterator[tuple[str, str, float]]:
        """One kNN query per image (batched in _msearch); a pair is reported once, as (smaller id, larger id)."""
        if self.identity is None:  # no index yet: no pairs
            return
        seen: set[tuple[str, str]] = set()  # a pair is usually found from both of its ends
        batch: list[tuple[str, np.ndarray]] = []
        with self._guard("find near-duplicate images"):
            for doc in helpers.scan(self._es, query={"query": {"match_all": {}}, "docvalue_fields": ["vector"]},
                                    index=self.alias, size=1000, scroll="10m", source=False,
                                    ignore_unavailable=True):
                batch.append((doc["_id"], _vector(doc)))
                if len(batch) == PAIR_BATCH:
                    yield from self._pairs(batch, threshold, seen)
                    batch = []
            yield from self._pairs(batch, threshold, seen)

    def location(self) -> str:
        return f"{self.url} index {self.alias}"

    def close(self) -> None:
        self._es.close()

    # -- internals --------------------------------------------------------------------------------
    def index_name(self, identity: ModelIdentity) -> str:
        """The concrete index for `identity`: index names allow only lowercase letters, digits and -_."""
        weights = re.sub(r"[^a-z0-9_-]+", "-", identity.weights.lower()).strip("-_") or "weights"
        return f"{self.alias}-{identity.descriptor}-{identity.dims}-{weights}"[:255]

    def _read_identity(self) -> ModelIdentity | None:
        with self._guard("read the index identity"):
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
        if int(meta.get("schema", 0)) > SCHEMA:
            raise StoreError(f"the Elasticsearch index {index!r} at {self.url} was made by a newer image-search")
        # The index's own type, not self.index_type (which is for new indices), sets the re-scoring.
        index_type = mappings["properties"]["vector"].get("index_options", {}).get("type", "")
        self._oversample = OVERSAMPLE_BBQ if index_type.startswith("bbq") else OVERSAMPLE
        return ModelIdentity.from_dict(meta["identity"])

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

    def _knn_clause(self, query: np.ndarray, k: int, filters: SearchFilter) -> dict[str, Any]:
        clause: dict[str, Any] = {
            "field": "vector",
            "query_vector": query,
            "k": k,
            "num_candidates": min(MAX_CANDIDATES, max(MIN_CANDIDATES, CANDIDATES_PER_HIT * k)),
            "rescore_vector": {"oversample": self._oversample},
        }
        words = [w.casefold() for w in filters.words()]
        if words:
            clause["filter"] = {"bool": {"filter": [{"wildcard": {"words": {"value": f"*{_escape_wildcard(w)}*"}}}
                                                    for w in words]}}
        if filters.min_score is not None:
            clause["similarity"] = filters.min_score - SIMILARITY_MARGIN  # a raw dot product, not a _score
        return clause

    def _pairs(self, batch: list[tuple[str, np.ndarray]], threshold: float,
               seen: set[tuple[str, str]]) -> Iterator[tuple[str, str, float]]:
        pending = [(image_id, vec, PAIR_K) for image_id, vec in batch]
        while pending:
            searches: list[dict[str, Any]] = []
            for _, vec, k in pending:
                searches += [{"index": self.alias},
                             {"query": {"knn": self._knn_clause(vec, k, SearchFilter(min_score=threshold))}, "size": k,
                              "_source": False}]
            responses = self._writer.msearch(searches=searches)["responses"]
            again = []
            for (image_id, vec, k), response in zip(pending, responses, strict=True):
                if "error" in response:
                    raise StoreError(f"Elasticsearch at {self.url} could not find near-duplicate images: "
                                     f"{_reason(response['error'])}")
                docs = response["hits"]["hits"]
                if len(docs) == k and k < MAX_CANDIDATES:
                    again.append((image_id, vec, min(MAX_CANDIDATES, k * 4)))  # there may be more above it
                    continue
                for doc in docs:
                    score = _cosine(doc["_score"])
                    pair = (min(image_id, doc["_id"]), max(image_id, doc["_id"]))
                    if doc["_id"] != image_id and score >= threshold and pair not in seen:
                        seen.add(pair)
                        yield pair[0], pair[1], score
            pending = again

    def _search(self, action: str, **kwargs: Any) -> list[dict[str, Any]]:
        with self._guard(action):
            response = self._es.search(index=self.alias, ignore_unavailable=True, track_total_hits=False, **kwargs)
        return response["hits"]["hits"]

    def _bulk(self, actions: Iterable[dict[str, Any]], action: str) -> None:
        failed: list[dict[str, Any]] = []
        with self._guard(action):
            for ok, item in helpers.streaming_bulk(
                self._writer, actions, chunk_size=BULK_CHUNK, raise_on_error=False, max_retries=4,
                initial_backoff=0.5, max_backoff=8, retry_on_status=RETRY_STATUS, yield_ok=False,
                require_alias=True,  # never let a write auto-create an index with a guessed mapping
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
    text_and_keyword = {"type": "text", "fields": {"keyword": {"type": "keyword"}}}
    return {
        "dynamic": "strict",  # a typo in a field name fails loudly instead of growing the mapping
        "_meta": {"app": "image-search", "schema": SCHEMA, "identity": identity.to_dict()},
        "_source": {"excludes": ["vector", "words"]},
        "properties": {
            "path": {"type": "keyword"},
            "name": text_and_keyword,
            "folder": text_and_keyword,
            "words": {"type": "keyword", "doc_values": False},  # casefolded name and folder, for `text`
            "size": {"type": "long"},
            "mtime_ns": {"type": "long"},
            "hash": {"type": "keyword"},
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            "vector": {
                "type": "dense_vector",
                "dims": identity.dims,
                "index": True,
                "similarity": "dot_product",
                "index_options": {"type": index_type},
            },
        },
    }


def _document(record: ImageRecord, vector: np.ndarray) -> dict[str, Any]:
    doc: dict[str, Any] = {f: getattr(record, f) for f in RECORD_FIELDS}
    doc["words"] = [record.name.casefold(), record.folder.casefold()]
    doc["vector"] = np.ascontiguousarray(vector, dtype=np.float32)
    return doc


def _record(doc: dict[str, Any]) -> ImageRecord:
    source = doc["_source"]
    return ImageRecord(doc["_id"], *(source[f] for f in RECORD_FIELDS))


def _vector(doc: dict[str, Any]) -> np.ndarray:
    return np.asarray(doc["fields"]["vector"][0], dtype=np.float32)


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
