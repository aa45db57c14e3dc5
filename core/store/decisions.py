""""Not duplicates" decisions: pairs of images the user said are different pictures, kept beside the index.

A decision is data that changes after indexing, so it never touches a vector (issue 11's foundations):
- embedded store: a table `not_duplicates` in the same SQLite file (`data_dir/index.sqlite3`), written through
  a connection of its own (the file is in WAL mode, so it does not block the store's readers);
- Elasticsearch: a side index `<alias>-decisions`, one small document per pair, written through the
  store's client. Elasticsearch keeps vectors out of `_source`, so a partial update of an image document
  would lose its vector; a side index never rewrites one.

A pair is stored once, as (smaller id, larger id). Image ids are never reused (core.store.base.new_image_id),
so the decisions of a deleted image are harmless leftovers; `reset()` forgets them all.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from core.store.base import StoreError, VectorStore

Pair = tuple[str, str]  # (smaller id, larger id)
TABLE_SQL = "CREATE TABLE IF NOT EXISTS not_duplicates (a TEXT NOT NULL, b TEXT NOT NULL, PRIMARY KEY (a, b))"
SIDE_INDEX_SUFFIX = "-decisions"
WRITE_TIMEOUT_S = 120.0


def pair(a: str, b: str) -> Pair:
    """The stored form of a pair of image ids: sorted, so (a, b) and (b, a) are one decision."""
    return (a, b) if a < b else (b, a)


def pairs_of(ids: Iterable[str]) -> list[Pair]:
    """Every pair of distinct ids among `ids` (a group of n images gives n·(n-1)/2 pairs)."""
    unique = sorted(set(ids))
    return list(itertools.combinations(unique, 2))


class Decisions(Protocol):
    """The "not duplicates" decisions of one index. Errors: StoreError with a message for users."""

    def mark_not_duplicates(self, ids: Iterable[str]) -> int:
        """Record that the images `ids` (a pair, or a whole group) are not duplicates of each other: every
        pair among them is excluded from later duplicate groups. Durable on return. Returns the number of
        pairs given (already known pairs included)."""

    def is_excluded(self, a: str, b: str) -> bool:
        """True when the pair (a, b), in either order, was marked "not duplicates"."""

    def excluded_pairs(self) -> set[Pair]:
        """Every marked pair, each as (smaller id, larger id)."""

    def reset(self) -> None:
        """Forget every decision (later runs show those groups again)."""

    def close(self) -> None:
        """Release the connection (the store itself stays open)."""


def decisions_for(store: VectorStore) -> Decisions:
    """The decisions kept beside `store` (an EmbeddedStore or an ElasticStore). Raises StoreError."""
    if store.backend == "embedded":
        return EmbeddedDecisions(Path(store.data_dir) / "index.sqlite3")  # type: ignore[attr-defined]
    if store.backend == "elasticsearch":
        return ElasticDecisions(store._es, store.alias)  # type: ignore[attr-defined]
    raise StoreError(f"no decisions for a {store.backend!r} index")


class EmbeddedDecisions:
    """Decisions in the table `not_duplicates` of the embedded index's SQLite file."""

    def __init__(self, db_path: Path):
        self.db_path = db_path
        self._lock = threading.Lock()
        with self._sqlite("open the decisions"):
            self._db = sqlite3.connect(db_path, check_same_thread=False, timeout=30, isolation_level=None)
            self._db.execute(TABLE_SQL)

    def mark_not_duplicates(self, ids: Iterable[str]) -> int:
        pairs = pairs_of(ids)
        with self._lock, self._sqlite("record the decision"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO not_duplicates VALUES (?, ?)", pairs)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(pairs)

    def is_excluded(self, a: str, b: str) -> bool:
        with self._lock, self._sqlite("read the decisions"):
            return self._db.execute("SELECT 1 FROM not_duplicates WHERE a = ? AND b = ?", pair(a, b)).fetchone() \
                is not None

    def excluded_pairs(self) -> set[Pair]:
        with self._lock, self._sqlite("read the decisions"):
            return {(a, b) for a, b in self._db.execute("SELECT a, b FROM not_duplicates")}

    def reset(self) -> None:
        with self._lock, self._sqlite("reset the decisions"):
            self._db.execute("DELETE FROM not_duplicates")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _sqlite(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"cannot {action} in {self.db_path}: {exc}") from exc


class ElasticDecisions:
    """Decisions in the side index `<alias>-decisions`: documents {"a": id, "b": id} with the _id "a:b"."""

    def __init__(self, es: Any, alias: str):
        from elasticsearch import ApiError

        self._es = es
        self._writer = es.options(request_timeout=WRITE_TIMEOUT_S)
        self.index = f"{alias}{SIDE_INDEX_SUFFIX}"
        self._api_error = ApiError

    def mark_not_duplicates(self, ids: Iterable[str]) -> int:
        from elasticsearch import helpers

        pairs = pairs_of(ids)
        if not pairs:
            return 0
        with self._guard("record the decision"):
            self._create()
            actions = ({"_op_type": "index", "_index": self.index, "_id": f"{a}:{b}", "_source": {"a": a, "b": b}}
                       for a, b in pairs)
            # refresh: a decision is visible to the next duplicates run at once, in any process.
            _, errors = helpers.bulk(self._writer, actions, chunk_size=1000, raise_on_error=False, refresh=True)
        if errors:
            raise StoreError(f"Elasticsearch could not record {len(errors)} decisions in {self.index!r}")
        return len(pairs)

    def is_excluded(self, a: str, b: str) -> bool:
        a, b = pair(a, b)
        with self._guard("read the decisions"):
            # HEAD answers 404 (False) both for an unknown pair and while there is no side index yet.
            return bool(self._es.exists(index=self.index, id=f"{a}:{b}"))

    def excluded_pairs(self) -> set[Pair]:
        from elasticsearch import helpers

        with self._guard("read the decisions"):
            if not self._es.indices.exists(index=self.index):
                return set()
            return {(doc["_source"]["a"], doc["_source"]["b"])
                    for doc in helpers.scan(self._es, index=self.index, query={"query": {"match_all": {}}},
                                            size=5000, scroll="2m")}

    def reset(self) -> None:
        # Deleting the side index: the test server (integ-test zip) has no _delete_by_query.
        with self._guard("reset the decisions"):
            self._writer.indices.delete(index=self.index, ignore_unavailable=True)

    def close(self) -> None:
        """Nothing to release: the client belongs to the store."""

    def _create(self) -> None:
        if self._es.indices.exists(index=self.index):
            return
        try:
            self._writer.indices.create(
                index=self.index,
                mappings={"dynamic": "strict", "properties": {"a": {"type": "keyword"}, "b": {"type": "keyword"}}},
                settings={"number_of_shards": 1, "auto_expand_replicas": "0-1"})
        except self._api_error as exc:
            if exc.error != "resource_already_exists_exception":  # another process made it first
                raise

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        from elasticsearch import ApiError, TransportError

        try:
            yield
        except ApiError as exc:
            raise StoreError(f"Elasticsearch could not {action} ({self.index!r}): HTTP {exc.status_code}, "
                             f"{exc.error}") from exc
        except TransportError as exc:
            raise StoreError(f"cannot reach Elasticsearch to {action} ({self.index!r}): {exc}") from exc
