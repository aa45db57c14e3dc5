"""The index contract every backend implements, the records it holds, and its shared input checks.

Both backends (`embedded.py`, `elastic.py`) implement `VectorStore` and run the same contract tests
(`tests/test_store_contract.py`, against the embedded store and a real Elasticsearch server).

Visibility: a write (`upsert`, `update`, `delete`) returns once it is durable; it is visible to the same
store object at once and to other processes after `finish()` (Elasticsearch refreshes then).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from core.errors import CONFLICT, INVALID, UNAVAILABLE, UserError
from core.paths import display_path, fold, path_json, query_words, words_match

# A vector batch: float32, shape (n, dims), each row of unit L2 length.
Vectors = np.ndarray
INT64_MAX = 2**63 - 1


class StoreError(UserError):
    """The index cannot do what was asked (server away, corrupt data, ...). The message is for users."""

    kind = UNAVAILABLE
    title = "Index unavailable"


class IdentityMismatch(StoreError):
    """The index was built by another model identity; mixing vectors would give meaningless scores."""

    kind = CONFLICT
    title = "Index model mismatch"


class InvalidRecord(StoreError, ValueError):
    """A record or vector that no backend may store (wrong dimensions, non-finite values, text the store
    cannot hold). Raised by `validate` before anything is written, so the index stays as it was."""

    kind = INVALID
    title = "Invalid record"


@dataclass(frozen=True)
class ModelIdentity:
    """What produced an index's vectors. Two vectors are comparable only if their identities are equal."""

    descriptor: str  # "gem" or "fc1"
    dims: int
    weights: str  # "imagenet", "random-<seed>", or "md5:<hex>" for a local file of other weights

    def label(self) -> str:
        """A short readable name, e.g. "vgg16-gem-512d-imagenet", for messages and `info`."""
        return f"vgg16-{self.descriptor}-{self.dims}d-{self.weights}"

    def to_dict(self) -> dict:
        """The identity as JSON-ready data (stored in the index's metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelIdentity:
        """The identity stored by `to_dict`. Raises KeyError/ValueError for malformed data."""
        return cls(descriptor=str(data["descriptor"]), dims=int(data["dims"]), weights=str(data["weights"]))


@dataclass(frozen=True)
class ImageRecord:
    """One indexed image: one file's content, reachable by one or more paths.

    `id` is assigned when the image is first indexed (`new_image_id`) and never derived from a path, so
    it survives renames and moves (matched by size + content hash) and re-indexing. `paths` holds every
    path the image is known by, primary first: hard links of one file (same device and inode within one
    scan) are one image with several paths. Paths are fs paths (see core/paths.py: str, undecodable bytes
    carried as surrogates) and absolute, with symlinks resolved. Byte-identical copies at different
    inodes are separate images (duplicates, not aliases).
    """

    id: str
    paths: tuple[str, ...]
    size: int  # bytes
    mtime_ns: int  # st_mtime_ns at indexing
    ctime_ns: int  # st_ctime_ns at indexing: copy tools that keep mtime still change it
    inode: int  # st_ino at indexing (0 when unknown); never the identity, device numbers change
    hash: str  # blake2b-128 hex of the file's bytes
    width: int  # pixels, after EXIF orientation
    height: int

    @property
    def path(self) -> str:
        """The primary path."""
        return self.paths[0]

    @property
    def name(self) -> str:
        """The primary path's file name."""
        return os.path.basename(self.path)

    @property
    def folder(self) -> str:
        """The primary path's folder."""
        return os.path.dirname(self.path)

    def folded_fields(self) -> list[str]:
        """The texts a word filter looks in, folded (core.paths.fold): every path's name and folder."""
        seen: list[str] = []
        for path in self.paths:
            for text in (os.path.basename(path), os.path.dirname(path)):
                folded = fold(text)
                if folded not in seen:
                    seen.append(folded)
        return seen

    def to_dict(self) -> dict:
        """The record as JSON-ready data (`paths` a list); `from_dict` reads it back."""
        return {**asdict(self), "paths": list(self.paths)}

    @classmethod
    def from_dict(cls, data: dict) -> ImageRecord:
        """The record written by `to_dict`. Raises TypeError for missing or unknown fields."""
        return cls(**{**data, "paths": tuple(data["paths"])})


@dataclass(frozen=True)
class Hit:
    """One kNN result: the image and its cosine similarity to the query."""

    record: ImageRecord
    score: float  # cosine similarity in [-1, 1]


@dataclass(frozen=True)
class SearchFilter:
    """Optional constraints on a kNN search.

    `text`: every word (a "quoted phrase" is one word) must be a substring of a file name or a folder of
    the image, compared after `core.paths.fold` (NFKC + casefold), the one rule both backends use.
    Scores are cosine similarities; bounds are inclusive.
    """

    min_score: float | None = None
    max_score: float | None = None
    text: str | None = None
    ids: frozenset[str] | None = field(default=None)  # only these images (None: any)
    # Rank by scoring every stored vector instead of the ANN graph (the reference tests compare with).
    # Embedded store only: Elasticsearch raises StoreError.
    exact: bool = False

    def words(self) -> list[str]:
        """The filter's words and quoted phrases, folded (core.paths.query_words); [] when no text."""
        return query_words(self.text)

    def accepts_score(self, score: float) -> bool:
        """Whether a cosine similarity lies within the inclusive bounds."""
        return (self.min_score is None or score >= self.min_score) and (
            self.max_score is None or score <= self.max_score
        )

    def accepts_record(self, record: ImageRecord) -> bool:
        """The non-score constraints, evaluated in Python (the reference both backends must agree with)."""
        if self.ids is not None and record.id not in self.ids:
            return False
        words = self.words()
        return not words or words_match(words, record.folded_fields())


def new_image_id() -> str:
    """A fresh image id: 16 hex digits from the OS's random source (64 bits; collisions are negligible
    below billions of images, birthday bound)."""
    return os.urandom(8).hex()


def validate(records: Sequence[ImageRecord], vectors: np.ndarray | None, dims: int | None) -> Vectors | None:
    """Check a batch before any write; return the vectors as float32 unit rows (renormalised).

    Raises InvalidRecord for: a count mismatch, vectors not of shape (n, dims), non-finite or zero
    vectors, an empty id or path list, a text field with a NUL character or a lone surrogate that is
    not an fs path's undecodable byte, negative sizes or integers beyond 64 bits, duplicate ids, the same
    path twice.
    """
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise InvalidRecord("the same image id twice in one write")
    paths = [p for r in records for p in r.paths]
    if len(set(paths)) != len(paths):
        raise InvalidRecord("the same path twice in one write (a path names one image)")
    for r in records:
        _check_record(r)
    if vectors is None:
        return None
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(records) or (dims is not None and vectors.shape[1] != dims):
        want = f"({len(records)}, {dims if dims is not None else 'dims'})"
        raise InvalidRecord(f"expected vectors of shape {want}, got {vectors.shape}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms) & (norms > 0)):
        raise InvalidRecord("cannot index a zero or non-finite vector")
    return vectors / norms


def _check_record(r: ImageRecord) -> None:
    if not r.id or not isinstance(r.id, str) or not r.id.isascii() or not r.id.isprintable():
        raise InvalidRecord(f"invalid image id {r.id!r}")
    if not r.paths:
        raise InvalidRecord(f"image {r.id} has no path")
    for path in r.paths:
        if not isinstance(path, str) or not path or "\x00" in path:
            raise InvalidRecord(f"image {r.id} has an invalid path {path!r}")
        try:
            os.fsencode(path)
        except UnicodeEncodeError:
            raise InvalidRecord(f"image {r.id} has a path that is not a file name: {path!r}") from None
    for name in ("size", "mtime_ns", "ctime_ns", "inode", "width", "height"):
        value = getattr(r, name)
        if not isinstance(value, int) or isinstance(value, bool) or not -INT64_MAX <= value <= INT64_MAX:
            raise InvalidRecord(f"image {r.id}: {name} must be a 64-bit integer, got {value!r}")
    if r.size < 0 or r.width < 0 or r.height < 0:
        raise InvalidRecord(f"image {r.id}: size and dimensions cannot be negative")
    if not isinstance(r.hash, str) or not r.hash.isascii():
        raise InvalidRecord(f"image {r.id}: invalid content hash {r.hash!r}")


def cosine_clip(score: float) -> float:
    """A score clipped to [-1, 1] (float rounding can step past them); -1 for NaN or infinity."""
    return float(min(1.0, max(-1.0, score))) if math.isfinite(score) else -1.0


class VectorStore(Protocol):
    """An index of unit vectors with image records. Implementations are safe to share between threads.

    Errors: every method raises StoreError (or a subclass) with a message for users; nothing else
    escapes for I/O or server failures. Writes validate their whole input first (`validate`) and write
    nothing when it is invalid.

    A path names at most one image: a write that gives an image a path another image holds takes the
    path from that image, and an image left with no path is deleted (its file is gone).
    """

    backend: str  # "embedded" or "elasticsearch"

    @property
    def identity(self) -> ModelIdentity | None:
        """The identity recorded in the index, or None while it has never been initialised."""

    def initialize(self, identity: ModelIdentity) -> None:
        """Record `identity` in a new index, or check an existing one; raises IdentityMismatch.
        Writes before `initialize` raise StoreError."""

    def upsert(self, records: Sequence[ImageRecord], vectors: Vectors) -> None:
        """Insert or replace records (by id) with their vectors (float32 (n, dims), unit rows), durably.
        Embedded: one transaction. Elasticsearch has no transactions: a server failure mid-batch can leave
        part of it written; repeating the same upsert repairs that (writes by id are idempotent).
        Raises InvalidRecord (nothing written) or StoreError (also before `initialize`)."""

    def update(self, records: Sequence[ImageRecord]) -> None:
        """Replace the records of images already in the index (paths, size, times...), keeping their
        vectors. Ids not in the index are ignored. Raises InvalidRecord (nothing written) or StoreError
        (also before `initialize`)."""

    def delete(self, ids: Iterable[str]) -> None:
        """Forget these images (unknown ids are ignored). Raises StoreError before `initialize`."""

    def get(self, image_id: str) -> ImageRecord | None:
        """The record of an id, or None."""

    def get_many(self, ids: Iterable[str]) -> dict[str, ImageRecord]:
        """Records by id, in one round trip per few thousand ids; unknown ids are absent."""

    def get_by_path(self, path: str) -> ImageRecord | None:
        """The record with `path` among its paths (an exact fs path), or None."""

    def find_by_hash(self, content_hash: str) -> list[ImageRecord]:
        """Records whose content hash is `content_hash` (to recognise a moved or renamed file)."""

    def vector(self, image_id: str) -> np.ndarray | None:
        """The stored vector of an id: float32 (dims,), or None."""

    def vectors(self, ids: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored vectors by id (float32 (dims,) each), in one round trip per thousand ids; unknown ids
        are absent."""

    def knn(self, vector: np.ndarray, k: int, filters: SearchFilter | None = None) -> list[Hit]:
        """The k records nearest to `vector` (float32 (dims,), unit length) by cosine similarity, best
        first, honouring filters. k results come back whenever k records pass the filters (exact on
        the embedded store; approximate, recall@10 >= 0.99, on Elasticsearch)."""

    def knn_many(self, vectors: Vectors, k: int, filters: SearchFilter | None = None) -> list[list[Hit]]:
        """`knn` for each row of `vectors` (float32 (m, dims)), in few round trips: one list per row."""

    def count(self) -> int:
        """How many images the index holds."""

    def records(self, under: str | None = None) -> Iterator[ImageRecord]:
        """Every record, or those with a path under the folder `under` (an absolute fs path, compared by
        its raw bytes: "/a" holds "/a/x.jpg", never "/ab/x.jpg"); each image once; streamed, so memory does
        not grow with the index. Ordered by path (embedded: raw bytes; Elasticsearch: display text)."""

    def finish(self) -> None:
        """End of a batch of writes (an indexing run): make them visible to searches in other processes."""

    def location(self) -> str:
        """Where the index lives, for users (a folder, or URL and index name)."""

    def close(self) -> None:
        """Release connections and files; the store is unusable afterwards."""


def record_json(record: ImageRecord) -> dict:
    """The one JSON shape of an image record (CLI `--json`, HTTP API): `id`, `path` (display text) and
    `path_bytes` when needed (core.paths.path_json), `paths` (display texts of every path), `name`,
    `folder`, `size` (bytes), `width`, `height` (pixels), `mtime` (seconds since the epoch, float)."""
    return {
        "id": record.id,
        **path_json(record.path),
        "paths": [display_path(p) for p in record.paths],
        "name": display_path(record.name),
        "folder": display_path(record.folder),
        "size": record.size,
        "width": record.width,
        "height": record.height,
        "mtime": record.mtime_ns / 1e9,
    }


def hit_json(hit: Hit) -> dict:
    """A record's JSON shape plus `score` (cosine similarity, rounded to 6 decimals)."""
    return {**record_json(hit.record), "score": round(float(hit.score), 6)}


def mismatch_message(current: ModelIdentity, wanted: ModelIdentity, location: str) -> str:
    """The user-facing message for an index at `location` built by `current` opened with settings giving
    `wanted`: the text of IdentityMismatch from the embedded store and the engine."""
    return (
        f"the index at {location} was built with {current.label()}, but the current settings give "
        f"{wanted.label()}; vectors of different models cannot be compared. Use the same --weights and "
        "--descriptor as when it was built, or choose another --data-dir (or Elasticsearch index) for this model."
    )
