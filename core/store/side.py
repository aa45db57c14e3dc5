"""Side data of a store: data that changes after indexing (tags, labels, photo metadata, "not duplicates"
decisions), kept beside the index and keyed by image id, never touching a vector (issue 11's foundations).

- Embedded store: a `SideTable`, tables in the index's own SQLite file (`data_dir/index.sqlite3`) written
  through a connection of its own and a write lock (the file is in WAL mode, so the store's readers are not
  blocked).
- Elasticsearch: a `SideIndex`, an index `<alias><suffix>` written through the store's client with whole
  documents. Elasticsearch keeps vectors out of `_source`, so a partial update of an image document would
  lose its vector, and the test server (the integ-test zip) has no `_update_by_query`, `_delete_by_query`
  or Painless; a side index never rewrites an image document.

Both turn every error of their driver into StoreError with a message for users.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.store.base import StoreError, VectorStore

WRITE_TIMEOUT_S = 120.0  # a bulk of side documents, refreshed, on a busy server
BULK_CHUNK = 500
OnOpen = Callable[["SideIndex", int], None]  # (the side index, the version it was found at)


def side_table(store: VectorStore, schema: Sequence[str]) -> SideTable:
    """The SideTable in an EmbeddedStore's file, with `schema` (CREATE ... IF NOT EXISTS statements) run."""
    from core.store.embedded import DB_NAME

    return SideTable(Path(store.data_dir) / DB_NAME, schema)  # type: ignore[attr-defined]


def side_index(store: VectorStore, suffix: str, properties: Mapping[str, Any], version: int = 1, *,
               source_excludes: Sequence[str] = (), on_open: OnOpen | None = None) -> SideIndex:
    """The SideIndex `<alias><suffix>` beside an ElasticStore (see SideIndex for the arguments)."""
    # The store's client (with its hosts, credentials and TLS settings). TODO(helper A): a public accessor on
    # ElasticStore, so that this is no reach into a private attribute.
    return SideIndex(store._es, f"{store.alias}{suffix}", properties, version,  # type: ignore[attr-defined]
                     source_excludes=source_excludes, on_open=on_open)


class SideTable:
    """Tables beside the embedded index, through a connection of their own. Thread-safe."""

    def __init__(self, db_path: Path, schema: Sequence[str]):
        self.db_path = db_path
        self._lock = threading.Lock()
        with self.guard("open"):
            self.db = sqlite3.connect(db_path, check_same_thread=False, timeout=30, isolation_level=None)
            for statement in schema:
                self.db.execute(statement)

    @contextmanager
    def reading(self, action: str) -> Iterator[sqlite3.Connection]:
        """The connection, alone (the lock held); sqlite3 errors become StoreError("cannot {action} ...")."""
        with self._lock, self.guard(action):
            yield self.db

    @contextmanager
    def writing(self, action: str) -> Iterator[sqlite3.Connection]:
        """The connection inside one transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on any error)."""
        with self._lock, self.guard(action):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    @contextmanager
    def guard(self, action: str) -> Iterator[None]:
        """sqlite3 errors inside as StoreError("cannot {action} in {db_path}: ...")."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"cannot {action} in {self.db_path}: {exc}") from exc

    def close(self) -> None:
        """Close the connection (after any reading or writing in progress)."""
        with self._lock:
            self.db.close()


class SideIndex:
    """An Elasticsearch index beside an ElasticStore: "dynamic": "strict" `properties`, one shard, its
    format's `version` in the mapping's `_meta` (1 when absent), fields in `source_excludes` left out of
    `_source` (searched, never read back).

    `es` reads, `writer` writes (a longer timeout). The index is made by the first write (`create`); reads
    of an index not made yet find nothing. `on_open(side index, version found)` runs once, the first time
    the index is found existing: the owner's migrations.
    """

    def __init__(self, es: Any, name: str, properties: Mapping[str, Any], version: int = 1, *,
                 source_excludes: Sequence[str] = (), on_open: OnOpen | None = None):
        self.es = es
        self.writer = es.options(request_timeout=WRITE_TIMEOUT_S)
        self.name = name
        self.properties = dict(properties)
        self.version = version
        self.source_excludes = list(source_excludes)
        self.on_open = on_open
        self._exists = False

    def exists(self) -> bool:
        """Whether the index exists (cached once it does)."""
        if not self._exists and self.es.indices.exists(index=self.name):
            self._exists = True
            if self.on_open is not None:
                mapping = next(iter(self.es.indices.get_mapping(index=self.name).values()))["mappings"]
                self.on_open(self, (mapping.get("_meta") or {}).get("version", 1))
        return self._exists

    def create(self) -> None:
        """Make the index unless it exists (another process making it at the same time is fine)."""
        from elasticsearch import ApiError

        if self.exists():
            return
        try:
            mappings = {"dynamic": "strict", "_meta": {"version": self.version}, "properties": self.properties}
            if self.source_excludes:
                mappings["_source"] = {"excludes": self.source_excludes}
            self.writer.indices.create(index=self.name, mappings=mappings,
                                       settings={"number_of_shards": 1, "auto_expand_replicas": "0-1"})
        except ApiError as exc:
            if exc.error != "resource_already_exists_exception":
                raise
        self._exists = True

    def put_mapping(self) -> None:
        """Map `properties` on an existing index (new fields only: allowed on a live index) at `version`."""
        self.writer.indices.put_mapping(index=self.name, properties=self.properties, meta={"version": self.version})

    def write(self, docs: Iterable[tuple[str, dict[str, Any]]], what: str) -> None:
        """Index whole documents (_id, _source), made visible to searches in any process on return
        (refresh). Raises StoreError naming `what` when any is refused."""
        from elasticsearch import helpers

        actions = ({"_op_type": "index", "_index": self.name, "_id": i, "_source": doc} for i, doc in docs)
        _, errors = helpers.bulk(self.writer, actions, chunk_size=BULK_CHUNK, raise_on_error=False, refresh=True)
        if errors:
            raise StoreError(f"Elasticsearch could not write {len(errors)} {what} in {self.name!r}")

    def delete(self, ids: Iterable[str]) -> None:
        """Delete documents by _id (unknown ones are ignored), visible on return."""
        from elasticsearch import helpers

        actions = ({"_op_type": "delete", "_index": self.name, "_id": i} for i in ids)
        helpers.bulk(self.writer, actions, chunk_size=BULK_CHUNK, raise_on_error=False, refresh=True)

    def scan(self, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every hit of `query` (a search body), in no order."""
        from elasticsearch import helpers

        yield from helpers.scan(self.es, index=self.name, query=query, size=5000, scroll="2m")

    def drop(self) -> None:
        """Delete the whole index (the test server has no _delete_by_query)."""
        self.writer.indices.delete(index=self.name, ignore_unavailable=True)
        self._exists = False

    @contextmanager
    def guard(self, action: str) -> Iterator[None]:
        """Client errors as StoreError("... could not {action} ...")."""
        from elasticsearch import ApiError, TransportError

        try:
            yield
        except ApiError as exc:
            raise StoreError(f"Elasticsearch could not {action} ({self.name!r}): HTTP {exc.status_code}, "
                             f"{exc.error}") from exc
        except TransportError as exc:
            raise StoreError(f"cannot reach Elasticsearch to {action} ({self.name!r}): {exc}") from exc
