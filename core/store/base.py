"""The index interface every backend implements, and the records it holds."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np


class StoreError(Exception):
    """The index cannot do what was asked (server away, corrupt data, ...). The message is for users."""


class IdentityMismatch(StoreError):
    """The index was built by another model identity; mixing vectors would give meaningless scores."""


@dataclass(frozen=True)
class ModelIdentity:
    """What produced an index's vectors. Two vectors are comparable only if their identities are equal."""

    descriptor: str  # "gem" or "fc1"
    dims: int
    weights: str  # "imagenet", "random-<seed>", or "md5:<hex>" for a local file of other weights

    def label(self) -> str:
        return f"vgg16-{self.descriptor}-{self.dims}d-{self.weights}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelIdentity:
        return cls(descriptor=str(data["descriptor"]), dims=int(data["dims"]), weights=str(data["weights"]))


@dataclass(frozen=True)
class ImageRecord:
    """One indexed image file. `id` is derived from the real path, so it is stable across runs."""

    id: str
    path: str  # real (resolved) path
    name: str  # file name
    folder: str  # real path of the containing folder
    size: int  # bytes
    mtime_ns: int
    hash: str  # blake2b of the file's bytes
    width: int  # pixels, after EXIF orientation
    height: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Hit:
    record: ImageRecord
    score: float  # cosine similarity in [-1, 1]

    def to_dict(self) -> dict:
        return {**self.record.to_dict(), "score": self.score}


@dataclass(frozen=True)
class SearchFilter:
    """Optional constraints on a kNN search. `text`: every word must occur in the file name or folder."""

    min_score: float | None = None
    max_score: float | None = None
    text: str | None = None

    def words(self) -> list[str]:
        return (self.text or "").lower().split()

    def accepts_score(self, score: float) -> bool:
        return (self.min_score is None or score >= self.min_score) and (
            self.max_score is None or score <= self.max_score
        )


class VectorStore(Protocol):
    """An index of unit vectors with image metadata. Implementations are safe to share between threads."""

    backend: str  # "embedded" or "elasticsearch"

    @property
    def identity(self) -> ModelIdentity | None:
        """The identity recorded in the index, or None while it has never been initialised."""

    def initialize(self, identity: ModelIdentity) -> None:
        """Record `identity` in a new index, or check an existing one; raises IdentityMismatch."""

    def upsert(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> None:
        """Insert or replace records (by id) with their vectors, durably, as one unit."""

    def delete(self, ids: Iterable[str]) -> None: ...

    def get(self, image_id: str) -> ImageRecord | None: ...

    def get_by_path(self, path: str) -> ImageRecord | None: ...

    def vector(self, image_id: str) -> np.ndarray | None: ...

    def knn(self, vector: np.ndarray, k: int, filters: SearchFilter | None = None) -> list[Hit]:
        """The k records nearest to `vector` (a unit vector), best first, honouring filters."""

    def count(self) -> int: ...

    def records(self, under: str | None = None) -> Iterator[ImageRecord]:
        """Every record, or those whose path lies under the folder `under` (a real path)."""

    def near_pairs(self, threshold: float) -> Iterator[tuple[str, str, float]]:
        """Pairs of ids whose cosine similarity is >= threshold, each pair once."""

    def finish(self) -> None:
        """End of a batch of writes (an indexing run): make them visible to searches."""

    def location(self) -> str:
        """Where the index lives, for users (a folder, or URL and index name)."""

    def close(self) -> None: ...
