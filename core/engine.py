"""The one engine every front end (CLI, HTTP API, desktop) holds: an index plus a lazily built VGG16."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from core import __version__
from core.config import Settings
from core.duplicates import find_groups
from core.images import load_image
from core.indexer import Cancel, IndexProgress, IndexReport, run_index
from core.model import (
    INPUT_SIZE,
    Extractor,
    resolve_weights,
    to_model_pixels,
)
from core.paths import display_path, is_text
from core.scan import is_under
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

SCAN_STATE_FILE = "scan-state.json"  # each root's device and mount points at its last scan (core/indexer.py)


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
        """The record of an indexed image, by id or by any of its paths.

        `ref`: an image id, or a path as the OS gives it (an fs path: a str with surrogates for bytes that
        are not UTF-8, as argv carries them), relative or with `~`, through symlinks or not. Raises
        NotFound when no record matches."""
        record = self.store.get(ref) if is_text(ref) and os.sep not in ref else None
        if record is None and ref:
            spelled = os.path.abspath(os.path.expanduser(ref))
            for path in dict.fromkeys((os.path.realpath(spelled), spelled)):
                if (record := self.store.get_by_path(path)) is not None:
                    break
        if record is None:
            raise NotFound(f"not in the index: {display_path(ref)}")
        return record

    def duplicates(self, threshold: float = 0.95) -> list[list[ImageRecord]]:
        """Groups of images whose cosine similarity is >= threshold (or whose bytes are equal), largest
        first, each sorted by path: core.duplicates.find_groups (batched kNN, never N x N). Hard links are
        one record, so they never pair. Raises StoreError."""
        groups = find_groups(self.store, threshold)
        return [sorted((m.record for m in g.members), key=lambda r: r.path) for g in groups]

    # -- indexing ---------------------------------------------------------------------------------
    def index(
        self,
        roots: list[str | Path],
        progress: Callable[[IndexProgress], None] | None = None,
        cancel: Cancel | None = None,
        prune_missing: bool = False,
    ) -> IndexReport:
        """Bring the index up to date with `roots` (folders or files; fs paths). See core/indexer.py for
        the matching and the rules that keep missing images; `prune_missing` forgets them. The roots'
        devices and mount points at the last scan are kept in `<data_dir>/scan-state.json`."""
        return run_index(
            self.store, self.identity, self.extractor, [os.fspath(r) for r in roots], progress, cancel,
            self.settings.batch_size, prune_missing=prune_missing, exclude=self.settings.exclude_patterns(),
            follow_external_symlinks=self.settings.follow_external_symlinks,
            state_file=Path(self.settings.data_dir) / SCAN_STATE_FILE,
        )

    def remove_folder(self, folder: str | Path) -> int:
        """Forget every image under `folder` (any path: an fs path, relative, with `~`, through symlinks);
        the files stay on disk. An image also known by a path elsewhere (a hard link) keeps that path.
        Returns how many images were forgotten."""
        spelled = os.path.abspath(os.path.expanduser(os.fspath(folder)))
        folders = list(dict.fromkeys((os.path.realpath(spelled), spelled)))
        gone, kept = set(), {}
        for under in folders:
            for record in self.store.records(under=under):
                paths = tuple(p for p in record.paths if not any(is_under(p, f) for f in folders))
                if paths:
                    kept[record.id] = replace(record, paths=paths)
                else:
                    gone.add(record.id)
        if kept:
            self.store.update(list(kept.values()))
        if gone:
            self.store.delete(gone)
        if kept or gone:
            self.store.finish()
        return len(gone)

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

