"""Index backends behind one interface (see base.py)."""

from __future__ import annotations

from collections.abc import Callable

from core.config import Settings
from core.store.base import (
    Hit,
    IdentityMismatch,
    ImageRecord,
    InvalidRecord,
    ModelIdentity,
    SearchFilter,
    StoreError,
    VectorStore,
    hit_json,
    new_image_id,
    record_json,
)

__all__ = [
    "Hit", "IdentityMismatch", "ImageRecord", "InvalidRecord", "ModelIdentity", "SearchFilter", "StoreError",
    "VectorStore", "hit_json", "new_image_id", "open_store", "record_json",
]


def open_store(settings: Settings, progress: Callable[[int, int], None] | None = None) -> VectorStore:
    """The backend the settings name. Elasticsearch is imported only when chosen.

    `progress(done, total)` is called while an index of an older schema is migrated (images done so far);
    raises StoreError when the index cannot be opened.
    """
    if settings.backend == "elasticsearch":
        from core.store.elastic import ElasticStore

        return ElasticStore.from_settings(settings, progress)
    from core.store.embedded import EmbeddedStore

    return EmbeddedStore(settings.data_dir, progress)
