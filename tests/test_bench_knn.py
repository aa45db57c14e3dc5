"""bench/knn.py runs end to end against the real test server, on a tiny config (its figures are not checked)."""

from __future__ import annotations

import json

from bench import knn

pytest_plugins = ["tests.es_fixtures"]


def test_the_knn_bench_reports_every_type_against_flat(es_url, capsys):
    assert knn.main(["--url", es_url, "--configs", "64:300", "--queries", "10", "--warm-up", "20",
                     "--ingest-sample", "50"]) == 0
    report = json.loads(capsys.readouterr().out)

    (result,) = report["results"]
    assert [t["type"] for t in result["types"]] == ["int8_hnsw", "bbq_hnsw", "flat"]
    for entry in result["types"]:
        assert entry["warm_up_queries"] == 20
        assert entry["p50_ms"] > 0 and entry["p50_speedup_vs_flat"] > 0
    flat = result["types"][-1]
    assert flat["recall_at_10"] == 1.0 and flat["p50_speedup_vs_flat"] == 1.0
    assert "without_rescore" in result["types"][0]
    # Reported, not compared: on a loaded machine an empty search can take as long as a flat one of 300 docs.
    assert flat["empty_search_p50_ms"] > 0 and result["speedup_ceiling"] > 0
    assert report["script_score"]["available"] is False  # the test distribution has no Painless
    assert report["ingest"]["bulk_docs_per_s"] > 0
