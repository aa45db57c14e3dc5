"""Exact search on demand: `--exact` (CLI), `exact=true` (API), refused by Elasticsearch with a clear message."""

from __future__ import annotations

import numpy as np
import pytest
from werkzeug.exceptions import BadRequest

from core.api.parsing import search_params
from core.cli import build_parser, search_filter
from core.store.base import ImageRecord, ModelIdentity, SearchFilter, StoreError
from core.store.elastic import ElasticStore
from core.store.embedded import EmbeddedStore

pytest_plugins = ["tests.es_fixtures"]
IDENTITY = ModelIdentity("gem", 4, "random-0")


@pytest.mark.parametrize("command", [["search", "q.jpg"], ["similar", "/p/a.jpg"]])
def test_cli_exact_flag(command):
    assert search_filter(build_parser().parse_args([*command, "--exact"])).exact
    assert not search_filter(build_parser().parse_args(command)).exact


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), ("true", True), ("1", True),
                                                 ("False", False), ("0", False)])
def test_api_exact_parameter(value, expected):
    assert search_params({"exact": value})[1].exact is expected
    assert search_params({})[1].exact is False


@pytest.mark.parametrize("value", ["yes", 1, None, [True]])
def test_api_exact_parameter_must_be_a_boolean(value):
    with pytest.raises(BadRequest, match="'exact' must be true or false"):
        search_params({"exact": value})


def test_embedded_exact_search(tmp_path):
    store = EmbeddedStore(tmp_path)
    store.initialize(IDENTITY)
    store.upsert([ImageRecord("a", ("/p/a.jpg",), 1, 1, 1, 1, "h", 1, 1)], np.array([[1, 0, 0, 0]], np.float32))
    assert [h.record.id for h in store.knn(np.array([1, 0, 0, 0], np.float32), 3, SearchFilter(exact=True))] == ["a"]
    store.close()


def test_elasticsearch_refuses_exact_search(es_url, es_alias):
    store = ElasticStore(es_url, es_alias)
    store.initialize(IDENTITY)
    with pytest.raises(StoreError, match="embedded index only"):
        store.knn(np.array([1, 0, 0, 0], np.float32), 3, SearchFilter(exact=True))
    store.close()
