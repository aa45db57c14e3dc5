"""A store on each backend for the tests of side data (annotations, decisions); load with
`pytest_plugins = ["tests.es_fixtures", "tests.side_fixtures"]` (the first for the real Elasticsearch server)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from core.store.base import ImageRecord, ModelIdentity, VectorStore, new_image_id

IDENTITY = ModelIdentity("gem", 8, "random-0")


def make_records(names: list[str]) -> tuple[list[ImageRecord], np.ndarray]:
    recs = [ImageRecord(new_image_id(), (f"/photos/{name}",), 1000 + i, 10**18 + i, 10**18 + i, 100 + i,
                        f"{i:032x}", 640, 480) for i, name in enumerate(names)]
    vectors = np.random.default_rng(0).standard_normal((len(names), IDENTITY.dims)).astype(np.float32)
    return recs, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def identity() -> ModelIdentity:
    """The identity `open_store` initialises with (8 dimensions: side data never reads vectors)."""
    return IDENTITY


@pytest.fixture
def records() -> Callable[[list[str]], tuple[list[ImageRecord], np.ndarray]]:
    """records(names): records of `/photos/<name>` with fresh ids, and unit vectors (IDENTITY) for them."""
    return make_records


@pytest.fixture(params=["embedded", "elasticsearch"])
def open_store(request, tmp_path) -> Callable[[], VectorStore]:
    """Opens this test's store, initialised, on each backend; call it again for a restart (new connections,
    nothing cached). The caller closes what it opens."""

    def open_() -> VectorStore:
        if request.param == "embedded":
            from core.store.embedded import EmbeddedStore

            store = EmbeddedStore(tmp_path / "data")
        else:
            from core.store.elastic import ElasticStore

            store = ElasticStore(request.getfixturevalue("es_url"), request.getfixturevalue("es_alias"))
        store.initialize(IDENTITY)
        return store

    return open_
