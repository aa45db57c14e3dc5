"""The one engine every front end (CLI, HTTP API, desktop) holds: an index plus a lazily built VGG16."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core import __version__
from core.config import Settings
from core.images import load_image
from core.indexer import Cancel, IndexProgress, IndexReport, run_index
from core.model import (
    INPUT_SIZE,
    Extractor,
    resolve_weights,
    to_model_pixels,
)
from core.store import (
    Hit,
    IdentityMismatch,
    ImageRecord,
    ModelIdentity,
    SearchFilter,
    VectorStore,
    open_store,
)
from core.store.embedded import mismatch_message


class NotFound(LookupError):
    """An id or path that is not in the index."""


class Engine:
    """Thread-safe: the API thread and the desktop worker may share one Engine."""

    def __init__(self, settings: Settings, store: VectorStore | None = None, extractor: Extractor | None = None):
        self.settings = settings
        self.store = store if store is not None else open_store(settings)
        stored = self.store.identity
        # An existing index keeps its descriptor unless one was asked for explicitly (then it must match).
        descriptor = settings.descriptor or (stored.descriptor if stored else "gem")
        self.weights = resolve_weights(settings.weights, descriptor)
        self.identity: ModelIdentity = self.weights.identity(descriptor)
        if stored is not None and stored != self.identity:
            raise IdentityMismatch(mismatch_message(stored, self.identity, self.store.location()))
        if extractor is not None and extractor.identity != self.identity:
            raise IdentityMismatch(f"extractor {extractor.identity.label()} != index {self.identity.label()}")
        self._extractor = extractor  # built on first use when not given (tests share one)
        self._extractor_lock = threading.Lock()

    # -- the model --------------------------------------------------------------------------------
    @property
    def model_loaded(self) -> bool:
        return self._extractor is not None

    def extractor(self) -> Extractor:
        """The VGG16 extractor, built on first use (seconds: imports TensorFlow, loads weights)."""
        with self._extractor_lock:
            if self._extractor is None:
                self._extractor = Extractor(
                    self.identity.descriptor, self.weights, self.settings.batch_size, self.settings.runtime
                )
            return self._extractor

    def embed(self, source: str | Path | bytes) -> np.ndarray:
        """The unit descriptor of one image file or buffer; ImageError if it is not a usable image."""
        loaded = load_image(source, draft=INPUT_SIZE)
        return self.extractor().embed(to_model_pixels(loaded.image)[None])[0]

    # -- searching --------------------------------------------------------------------------------
    def search(self, source: str | Path | bytes, k: int = 10, filters: SearchFilter | None = None) -> list[Hit]:
        return self.search_vector(self.embed(source), k, filters)

    def search_vector(self, vector: np.ndarray, k: int = 10, filters: SearchFilter | None = None) -> list[Hit]:
        return self.store.knn(vector, k, filters)

    def similar(self, ref: str, k: int = 10, filters: SearchFilter | None = None) -> list[Hit]:
        """Refine: search from an indexed image (id or path) by its stored vector; nothing is re-extracted."""
        record = self.resolve(ref)
        vector = self.store.vector(record.id)
        if vector is None:
            raise NotFound(f"no vector stored for {ref}")
        return self.store.knn(vector, k, filters)

    def resolve(self, ref: str) -> ImageRecord:
        """The record of an indexed image, by id or by (any spelling of) its path."""
        record = self.store.get(ref)
        if record is None and (os.sep in ref or os.path.exists(ref)):
            record = self.store.get_by_path(os.path.realpath(os.path.expanduser(ref)))
        if record is None:
            raise NotFound(f"not in the index: {ref}")
        return record

    def duplicates(self, threshold: float = 0.95) -> list[list[ImageRecord]]:
        """Groups (connected components) of images whose similarity is >= threshold, largest first."""
        parent: dict[str, str] = {}

        def root(i: str) -> str:
            while parent.setdefault(i, i) != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for a, b, _ in self.store.near_pairs(threshold):
            parent[root(a)] = root(b)
        groups: dict[str, list[str]] = {}
        for i in parent:
            groups.setdefault(root(i), []).append(i)
        result = []
        for ids in groups.values():
            records = sorted((r for i in ids if (r := self.store.get(i)) is not None), key=lambda r: r.path)
            if len(records) > 1:
                result.append(records)
        return sorted(result, key=lambda g: (-len(g), g[0].path))

    # -- indexing ---------------------------------------------------------------------------------
    def index(
        self,
        roots: list[str | Path],
        progress: Callable[[IndexProgress], None] | None = None,
        cancel: Cancel | None = None,
    ) -> IndexReport:
        return run_index(self.store, self.identity, self.extractor, [str(r) for r in roots], progress, cancel,
                         self.settings.batch_size)

    def remove_folder(self, folder: str | Path) -> int:
        """Forget every image under `folder` (the files stay on disk). Returns how many."""
        ids = [r.id for r in self.store.records(under=os.path.realpath(os.path.expanduser(str(folder))))]
        self.store.delete(ids)
        self.store.finish()
        return len(ids)

    # -- about ------------------------------------------------------------------------------------
    def info(self) -> dict:
        return {
            "backend": self.store.backend,
            "count": self.store.count(),
            "model": self.identity.to_dict(),
            "model_label": self.identity.label(),
            "weights": self.settings.weights,
            "location": self.store.location(),
            "version": __version__,
        }

    def close(self) -> None:
        self.store.close()

