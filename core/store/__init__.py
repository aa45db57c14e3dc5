"""Index backends behind one interface (see base.py)."""

from __future__ import annotations

from core.config import Settings
from core.store.base import (
    Hit,
    IdentityMismatch,
    ImageRecord,
    ModelIdentity,
    SearchFilter,
    StoreError,
    VectorStore,
)

__all__ = [
    "Hit", "IdentityMismatch", "ImageRecord", "ModelIdentity", "SearchFilter", "StoreError", "VectorStore",
    "open_store",
]


def open_store(settings: Settings) -> VectorStore:
    """The backend the settings name. Elasticsearch is imported only when chosen."""
    if settings.backend == "elasticsearch":
        from core.store.elastic import ElasticStore

        return ElasticStore.from_settings(settings)
    from core.store.embedded import EmbeddedStore

    return EmbeddedStore(settings.data_dir)
