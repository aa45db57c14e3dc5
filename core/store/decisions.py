""""Not duplicates" decisions: pairs of images the user said are different pictures, kept beside the index.

A decision is side data (core/store/side.py): on the embedded store a table `not_duplicates` in the index's
SQLite file; on Elasticsearch a side index `<alias>-decisions`, one small document per pair.

A pair is stored once, as (smaller id, larger id). Image ids are never reused (core.store.base.new_image_id),
so the decisions of a deleted image are harmless leftovers; `reset()` forgets them all.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Protocol

from typing_extensions import override

from core.store.base import StoreError, VectorStore
from core.store.side import SideIndex, SideTable, side_index, side_table

Pair = tuple[str, str]  # (smaller id, larger id)
TABLE_SQL = "CREATE TABLE IF NOT EXISTS not_duplicates (a TEXT NOT NULL, b TEXT NOT NULL, PRIMARY KEY (a, b))"
SIDE_INDEX_SUFFIX = "-decisions"
PROPERTIES = {"a": {"type": "keyword"}, "b": {"type": "keyword"}}


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
        return EmbeddedDecisions(side_table(store, [TABLE_SQL]))
    if store.backend == "elasticsearch":
        return ElasticDecisions(side_index(store, SIDE_INDEX_SUFFIX, PROPERTIES))
    raise StoreError(f"no decisions for a {store.backend!r} index")


class EmbeddedDecisions(Decisions):
    """Decisions in the table `not_duplicates` of the embedded index's SQLite file."""

    def __init__(self, table: SideTable):
        self.table = table

    @override
    def mark_not_duplicates(self, ids: Iterable[str]) -> int:
        pairs = pairs_of(ids)
        with self.table.writing("record the decision") as db:
            db.executemany("INSERT OR IGNORE INTO not_duplicates VALUES (?, ?)", pairs)
        return len(pairs)

    @override
    def is_excluded(self, a: str, b: str) -> bool:
        with self.table.reading("read the decisions") as db:
            return db.execute("SELECT 1 FROM not_duplicates WHERE a = ? AND b = ?", pair(a, b)).fetchone() is not None

    @override
    def excluded_pairs(self) -> set[Pair]:
        with self.table.reading("read the decisions") as db:
            return {(a, b) for a, b in db.execute("SELECT a, b FROM not_duplicates")}

    @override
    def reset(self) -> None:
        with self.table.writing("reset the decisions") as db:
            db.execute("DELETE FROM not_duplicates")

    @override
    def close(self) -> None:
        self.table.close()


class ElasticDecisions(Decisions):
    """Decisions in the side index `<alias>-decisions`: documents {"a": id, "b": id} with the _id "a:b"."""

    def __init__(self, index: SideIndex):
        self.index = index

    @override
    def mark_not_duplicates(self, ids: Iterable[str]) -> int:
        pairs = pairs_of(ids)
        if not pairs:
            return 0
        with self.index.guard("record the decision"):
            self.index.create()
            self.index.write(((f"{a}:{b}", {"a": a, "b": b}) for a, b in pairs), "decisions")
        return len(pairs)

    @override
    def is_excluded(self, a: str, b: str) -> bool:
        a, b = pair(a, b)
        with self.index.guard("read the decisions"):
            # HEAD answers 404 (False) both for an unknown pair and while there is no side index yet.
            return bool(self.index.es.exists(index=self.index.name, id=f"{a}:{b}"))

    @override
    def excluded_pairs(self) -> set[Pair]:
        with self.index.guard("read the decisions"):
            if not self.index.exists():
                return set()
            return {(d["_source"]["a"], d["_source"]["b"]) for d in self.index.scan({"query": {"match_all": {}}})}

    @override
    def reset(self) -> None:
        with self.index.guard("reset the decisions"):
            self.index.drop()

    @override
    def close(self) -> None:
        """Nothing to release: the client belongs to the store."""
