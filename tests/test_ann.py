"""kNN through the HNSW graph against the exact scan: recall, tail, dead and filtered rows, k always back."""

from __future__ import annotations

import os

import numpy as np
import pytest

from core.store import ann
from core.store.ann import VectorSearch, codes_path, saved_files
from core.store.vector_file import VectorFile, vector_path

DIMS = 32


def clustered(n: int, seed: int) -> np.ndarray:
    """Non-negative clustered unit vectors, like GeM descriptors (see bench/ann.py)."""
    rng = np.random.default_rng(seed)
    centres = np.maximum(rng.standard_normal((max(1, n // 50), DIMS)), 0) + 0.05
    v = np.maximum(centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, DIMS)), 0)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def small_graph(monkeypatch):
    """Graph thresholds scaled down so a few thousand rows exercise the graph and codes paths."""
    monkeypatch.setattr(ann, "GRAPH_MIN_ROWS", 500)
    monkeypatch.setattr(ann, "CODES_MIN_ROWS", 200)
    monkeypatch.setattr(ann, "SELECTIVE_FLOATS", 200 * DIMS)  # 200 rows


def build(tmp_path, n: int, seed: int = 0) -> tuple[VectorSearch, np.ndarray]:
    data = clustered(n, seed)
    f = VectorFile(vector_path(tmp_path, 0), DIMS, create=True)
    f.append(data, at=0)
    f.map(n)
    search = VectorSearch(tmp_path, 0, f)
    search.extend(np.ones(n, bool))
    return search, data


def queries(data: np.ndarray, m: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    q = np.maximum(data[rng.integers(0, len(data), m)] + 0.06 * rng.standard_normal((m, DIMS)), 0)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def recall(got, want) -> float:
    return np.mean([len(set(g[0]) & set(w[0])) / len(w[0]) for g, w in zip(got, want, strict=True)])


def test_graph_recall_against_exact_and_exact_scores(tmp_path, small_graph):
    search, data = build(tmp_path, 3000)
    assert search.graph is not None and search.covered == 3000
    qs = queries(data, 100)
    got, want = search.search(qs, 10), search.search(qs, 10, exact=True)
    assert recall(got, want) >= 0.98  # a small multi-threaded graph varies; bench/ann.py measures the figure
    for (slots, scores), q in zip(got, qs, strict=True):
        np.testing.assert_allclose(scores, data[slots] @ q, rtol=1e-5)  # float re-rank: exact cosines
        assert list(scores) == sorted(scores, reverse=True)


def test_every_row_of_a_concurrently_built_graph_is_reachable(tmp_path, small_graph):
    """usearch#735: concurrent adds strand a few rows no search reaches (2-10 of 1,000 here without relink)."""
    for seed in range(3):
        (tmp_path / str(seed)).mkdir()
        search, data = build(tmp_path / str(seed), 1000, seed)
        assert [slots[0] for slots, _ in search.search(data, 1)] == list(range(1000))


def test_graph_is_memory_mapped_on_reopen_and_the_tail_is_searched(tmp_path, small_graph):
    search, data = build(tmp_path, 2000)
    extra = clustered(300, 5)
    search.vectors.append(extra, at=2000)
    search.vectors.map(2300)
    reopened = VectorSearch(tmp_path, 0, search.vectors)
    assert reopened.covered == 2000  # the tail is not in the graph yet
    qs = extra[:20]
    for slots, _ in reopened.search(qs, 5):
        assert any(s >= 2000 for s in slots)
    assert [s[0][0] for s in reopened.search(qs, 5)] == list(range(2000, 2020))
    reopened.extend(np.ones(2300, bool))
    assert reopened.covered == 2300 and [r for _, r, _ in saved_files(tmp_path)] == [2300]


def test_dead_and_filtered_rows_never_come_back_and_k_still_does(tmp_path, small_graph):
    search, data = build(tmp_path, 3000)
    qs = queries(data, 30)
    mask = np.ones(3000, bool)
    nearest = [slots[0] for slots, _ in search.search(qs, 1, exact=True)]
    mask[nearest] = False  # each query's own nearest row deleted
    mask[::3] = False
    for (slots, _), (want, _) in zip(search.search(qs, 10, mask), search.search(qs, 10, mask, exact=True),
                                     strict=True):
        assert len(slots) == 10 and mask[slots].all()
        assert len(set(slots) & set(want)) >= 9


def test_a_selective_filter_is_an_exact_scan_of_its_rows(tmp_path, small_graph):
    search, data = build(tmp_path, 3000)
    mask = np.zeros(3000, bool)
    mask[[5, 17, 900, 2999]] = True
    qs = queries(data, 5)
    for slots, _ in search.search(qs, 10, mask):
        assert sorted(slots) == [5, 17, 900, 2999]  # fewer than k exist: all of them


def test_a_broad_filter_far_from_the_query_still_returns_k(tmp_path, small_graph, monkeypatch):
    monkeypatch.setattr(ann, "MAX_CANDIDATES", 20)  # the graph's candidates run out before k pass
    search, data = build(tmp_path, 3000)
    qs = queries(data, 10)
    mask = np.zeros(3000, bool)
    far = np.argsort(data @ qs[0])[:1600]  # the rows least like the first query: enough for the graph's path
    mask[far] = True
    assert search.plan(1600, 3000) == "graph"
    got = search.search(qs[:1], 10, mask)[0]
    want = search.search(qs[:1], 10, mask, exact=True)[0]
    assert len(got[0]) == 10 and list(got[0]) == list(want[0])


def test_a_middling_filter_scans_the_codes_of_its_rows(tmp_path, small_graph):
    """Filters keeping more than CODES_MIN_ROWS rows and less than GRAPH_SHARE: the 8-bit codes saved beside the graph,
    scanned over the rows the mask keeps and re-ranked with the float rows, find what the exact scan finds:
    for a random mask, and for one keeping only the rows least like the query (post-filtering the graph's
    candidates would find none of them)."""
    search, data = build(tmp_path, 3000)
    assert [r for _, r, _ in saved_files(tmp_path, kind="sq8")] == [3000]
    qs = queries(data, 30)
    rng = np.random.default_rng(2)
    random_mask = rng.random(3000) < 0.2
    far_mask = np.zeros(3000, bool)
    far_mask[np.argsort(data @ qs[0])[:600]] = True
    for mask, q in [(random_mask, qs), (far_mask, qs[:1])]:
        assert search.plan(int(mask.sum()), 3000) == "codes"
        got, want = search.search(q, 10, mask), search.search(q, 10, mask, exact=True)
        assert search.mapped_codes is not None and recall(got, want) >= 0.99
        for (slots, scores), query in zip(got, q, strict=True):
            assert len(slots) == 10 and mask[slots].all()
            np.testing.assert_allclose(scores, data[slots] @ query, rtol=1e-5)


def test_codes_grow_with_the_graph_and_a_graph_without_them_gets_them(tmp_path, small_graph):
    """Rows appended after the codes were saved are scanned exactly (the tail) until extend() adds them; an
    index whose graph was saved before codes existed searches middling filters exactly, then gets them."""
    search, data = build(tmp_path, 2000)
    extra = clustered(300, 5)
    search.vectors.append(extra, at=2000)
    search.vectors.map(2300)
    mask = np.zeros(2300, bool)
    mask[::4] = True  # a quarter of the rows, the tail's among them
    qs = np.concatenate([extra[:8:4], queries(data, 10)])
    want = search.search(qs, 5, mask, exact=True)
    assert recall(search.search(qs, 5, mask), want) >= 0.99
    search.extend(np.ones(2300, bool))
    assert [r for _, r, _ in saved_files(tmp_path, kind="sq8")] == [2300]
    assert search.codes().ntotal == 2300 and recall(search.search(qs, 5, mask), want) >= 0.99

    codes_path(tmp_path, 0, 2300).unlink()  # as a graph saved by a version before the codes
    reopened = VectorSearch(tmp_path, 0, search.vectors)
    assert reopened.lacks_codes() and reopened.codes() is None
    assert recall(reopened.search(qs, 5, mask), want) == 1.0  # exactly, meanwhile
    reopened.extend(np.ones(2300, bool))
    assert not reopened.lacks_codes() and reopened.codes().ntotal == 2300


def test_unreadable_codes_are_searched_around_and_written_again(tmp_path, small_graph, caplog):
    search, data = build(tmp_path, 2000)
    path = codes_path(tmp_path, 0, 2000)
    os.truncate(path, path.stat().st_size // 2)  # a damaged disk
    reopened = VectorSearch(tmp_path, 0, search.vectors)
    mask = np.zeros(2000, bool)
    mask[::3] = True
    qs = queries(data, 5)
    for _ in range(2):
        assert recall(reopened.search(qs, 5, mask), reopened.search(qs, 5, mask, exact=True)) == 1.0  # exactly
    assert caplog.text.count("cannot read the search codes") == 1  # once, not at every search
    assert path.exists() and reopened.lacks_codes()  # kept (the error may pass); the next extend writes it
    reopened.extend(np.ones(2000, bool))
    assert not reopened.lacks_codes() and reopened.codes().ntotal == 2000


def test_a_score_band_still_returns_k_when_rows_were_added_since_the_graph(tmp_path, small_graph):
    """The rows past the graph are scored whole: a low one among them must not stop the exact fallback when
    the graph's candidates all score above the band."""
    search, data = build(tmp_path, 2000)
    extra = clustered(5, 9)
    search.vectors.append(extra, at=2000)
    search.vectors.map(2005)
    q = queries(data, 1)
    exact = search.search(q, 200, exact=True)[0][1]
    low, high = float(exact[150]), float(exact[60])  # below the graph's 40 candidates
    want = search.search(q, 10, exact=True, min_score=low, max_score=high)[0]
    for mask in (None, np.arange(2005) % 3 != 0):  # the graph, and the codes
        got = search.search(q, 10, mask, min_score=low, max_score=high)[0]
        want = search.search(q, 10, mask, exact=True, min_score=low, max_score=high)[0]
        assert len(got[0]) == 10 and list(got[0]) == list(want[0])


def test_rows_removed_around_the_query_leave_enough_candidates_to_re_rank(tmp_path, small_graph):
    """Deleting each query's 30 nearest rows (a burst of near-duplicates) leaves a mask that keeps 99 % of the
    rows but almost none of the graph's first candidates: the graph is asked again for more."""
    search, data = build(tmp_path, 5000)
    qs = queries(data, 40)
    mask = np.ones(5000, bool)
    for slots, _ in search.search(qs, 30, exact=True):
        mask[slots] = False
    assert search.plan(int(mask.sum()), 5000) == "graph"
    # Without asking again: 0.98 here; at 30k x 512-d 0.845 (18 of 20 queries below 1.0).
    assert recall(search.search(qs, 10, mask), search.search(qs, 10, mask, exact=True)) >= 0.99


def test_score_bounds(tmp_path, small_graph):
    search, data = build(tmp_path, 3000)
    q = queries(data, 1)
    exact = search.search(q, 50, exact=True)[0]
    low, high = float(exact[1][30]), float(exact[1][5])
    slots, scores = search.search(q, 10, min_score=low, max_score=high)[0]
    assert len(slots) == 10 and ((scores >= low) & (scores <= high)).all()
    assert list(slots) == list(search.search(q, 10, exact=True, min_score=low, max_score=high)[0][0])


def test_small_sets_have_no_graph_and_search_exactly(tmp_path):
    search, data = build(tmp_path, 300)
    assert search.graph is None and saved_files(tmp_path) == []
    got = search.search(data[:3], 4)
    assert [s[0] for s, _ in got] == [0, 1, 2]
    assert all(len(s) == 0 for s, _ in search.search(data[:2], 0))


def test_the_search_beam_widens_as_the_graph_grows(tmp_path, small_graph):
    """Expansion 128 up to 100k graph rows, then 1 + 2 log2(rows / 100k) times as much: at 1M clustered x
    512-d, 554 left a query or two of 100-300 at recall 0, 1,000 none (core/store/ann.py). Large batches keep 64."""
    search, _ = build(tmp_path, 600)
    assert (search.expansion(), search.expansion(batch=True)) == (128, 64)
    for rows, expansion in [(100_000, 128), (200_000, 384), (1_000_000, 979)]:
        search.covered = rows
        assert (search.expansion(), search.expansion(batch=True)) == (expansion, 64)
    # ... and at least twice the candidates a query asks for (k=200: 800 candidates), batches excepted
    assert (search.expansion(candidates=800), search.expansion(True, 800)) == (1600, 64)


def test_large_batches_with_a_high_bar_range_search_the_inverted_lists(tmp_path, small_graph):
    """Duplicates' path: a batch of at least BATCH_QUERIES queries with min_score >= RANGE_MIN_SCORE goes
    through the IVF range search and finds what the exact scan finds, re-scored exactly; masked rows and
    rows appended after the lists were built are handled; lower bars and small batches keep the graph."""
    rng = np.random.default_rng(3)
    base = clustered(3000, 1)
    twins = base[:400] + 0.02 * rng.standard_normal((400, DIMS)).astype(np.float32)  # cosine ~0.99 to base
    data = np.concatenate([base, twins / np.linalg.norm(twins, axis=1, keepdims=True)]).astype(np.float32)
    f = VectorFile(vector_path(tmp_path, 0), DIMS, create=True)
    f.append(data, at=0)
    f.map(len(data))
    search = VectorSearch(tmp_path, 0, f)
    search.extend(np.ones(len(data), bool))
    qs = data[:ann.BATCH_QUERIES * 2]
    got = search.search(qs, 5, min_score=0.95)
    assert search.lists is not None and search.lists.ntotal == len(data)
    want = search.search(qs, 5, min_score=0.95, exact=True)
    assert [list(g[0]) for g in got] == [list(w[0]) for w in want]
    for (_, scores), (_, exact) in zip(got, want, strict=True):
        np.testing.assert_allclose(scores, exact, rtol=1e-5)
    assert all(3000 + n in slots for n, (slots, _) in enumerate(got))  # each query's planted twin

    mask = np.ones(len(data), bool)
    mask[3000:3010] = False  # dead or filtered rows never come back
    got = search.search(qs, 5, mask, min_score=0.95)
    assert not any(set(slots) & set(range(3000, 3010)) for slots, _ in got)

    extra = qs + 0.01 * rng.standard_normal(qs.shape).astype(np.float32)  # appended after the lists were built
    f.append(extra / np.linalg.norm(extra, axis=1, keepdims=True), at=len(data))
    f.map(len(data) + len(extra))
    got = search.search(qs, 5, min_score=0.95)
    assert search.lists.ntotal == len(data) + len(extra)
    assert all(len(data) + n in slots for n, (slots, _) in enumerate(got))

    search.lists = None
    search.search(qs, 5, min_score=ann.RANGE_MIN_SCORE - 0.1)  # a low bar: the graph
    search.search(qs[: ann.BATCH_QUERIES - 1], 5, min_score=0.95)  # a small batch: the graph
    assert search.lists is None


def test_how_a_mask_is_searched_depends_on_the_share_of_rows_it_keeps(tmp_path, small_graph, monkeypatch):
    """At least GRAPH_SHARE of the rows: the graph; more than CODES_MIN_ROWS rows: the codes; fewer, or no
    graph: an exact scan."""
    monkeypatch.setattr(ann, "CODES_MIN_ROWS", 100)
    search, _ = build(tmp_path, 600)
    assert search.plan(600, 600) == search.plan(round(600 * ann.GRAPH_SHARE), 600) == "graph"
    assert search.plan(round(600 * ann.GRAPH_SHARE) - 1, 600) == search.plan(101, 600) == "codes"
    assert search.plan(100, 600) == "exact"
    (tmp_path / "small").mkdir()
    small, _ = build(tmp_path / "small", 300)
    assert small.graph is None and small.plan(300, 300) == small.plan(100, 300) == "exact"
