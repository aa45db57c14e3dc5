"""bench/knn.py runs end to end against the real test server, on a tiny config (its figures are not checked)."""

from __future__ import annotations

import json

from bench import knn
from core.store.elastic import ElasticStore

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
    assert all(report["ingest"][f"{mode}_docs_per_s"] > 0 for mode in knn.INGEST_MODES)
    assert report["cpu"] and report["heap_mb"] > 0 and len(report["load_average_at_end"]) == 3


def test_the_knn_bench_measures_a_recall_latency_curve_on_a_kept_index(es_url, capsys):
    args = ["--url", es_url, "--configs", "32:200", "--types", "int8_hnsw", "--queries", "5", "--warm-up", "5",
            "--ingest-sample", "0", "--keep", "--curve", "20:2,40:3"]
    try:
        runs = []
        for _ in range(2):  # the second run reuses the kept index: no second ingest
            assert knn.main(args) == 0
            runs.append(json.loads(capsys.readouterr().out)["results"][0]["types"][0])
    finally:
        knn._drop(ElasticStore(es_url, "bench-int8-hnsw-32-200"))
    assert runs[0]["ingest_docs_per_s"] > 0 and runs[1]["reused"] is True
    assert [(p["num_candidates"], p["oversample"]) for p in runs[1]["curve"]] == [(20, 2.0), (40, 3.0)]
    assert all(0 <= p["recall_at_10"] <= 1 and p["p95_ms"] >= p["p50_ms"] > 0 for p in runs[1]["curve"])
