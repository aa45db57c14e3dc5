"""kNN over a vector file's rows: a usearch HNSW graph (int8, cosine) for speed, float32 rows for the answer.

Chosen by measurement (bench/ann.py; the figures are in the README): at 1M x 512 an exact float32 scan
reads 2 GB per query (~100 ms); the HNSW graph finds candidates in about a millisecond and an exact
re-rank of those candidates with the float rows gives the scores, so results carry exact cosine
similarities and recall@10 is that of the candidate list.

- The graph (`ann-<generation>-<rows>.usearch`, keys = slots) covers the first `rows` slots and is
  memory-mapped on open (`Index.restore(view=True)`: file pages, not process memory). Slots appended
  since it was saved (the *tail*) are scanned exactly and merged; `extend` adds them to the graph.
- The caller passes a mask of the slots that may be returned (live, and passing its filters): dead
  slots (replaced or deleted vectors) and filtered-out rows never come back. How a mask is searched
  depends on the share of rows it keeps (`plan`): most rows, through the graph with the over-fetch scaled
  by what the mask removes (asked again for more when it removed a query's neighbourhood); a few rows, an
  exact scan of those rows; in between, a scan of 8-bit codes of the rows it keeps, re-ranked with the
  float rows. Post-filtering the graph's candidates loses recall there: the k best rows a filter keeps lie
  deeper in the graph's answer than its beam reaches.
- The codes (`sq8-<generation>-<rows>.faiss`: faiss IndexScalarQuantizer, 8 bits a value, per-dimension
  ranges) are saved beside each graph, over the same rows, and memory-mapped on first use. An index whose
  graph was saved without them (before they existed) gets them at its next `extend`; until then those
  masks are scanned exactly.
- Through the graph or the codes, k results always come back when k rows pass the mask and score bounds:
  when the candidates run out before k hits, that query falls back to an exact scan. A range search
  (below) returns what its probed lists hold above the bar.
- A large batch with a high score bar (duplicates: every image a query, cosine >= 0.95) goes through a
  range search of a faiss IVF index (inverted lists of 8-bit codes) built on its first use and kept while the
  store is open: the graph's walk from its entry point finds a query's own row ever more rarely as the
  graph grows (RANGE_* below), while the inverted lists nearest the query hold its near-duplicates.
- `exact=True` is the exact scan, always available, and what tests compare with.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

# usearch loads its numkong kernels with RTLD_GLOBAL, and ONNX Runtime loaded after them crashes while it
# initialises (SIGSEGV; usearch 2.26.6, numkong 7.8.6, onnxruntime 1.32.0). Loaded first, both work.
with contextlib.suppress(ImportError):
    import onnxruntime  # noqa: F401 - must precede usearch

from usearch.index import Index

from core.store.vector_file import VectorFile

if TYPE_CHECKING:
    import faiss

# Measured in bench/ann.py (512-d; README): connectivity 16 with int8 rows and expansion 128 keep recall@10
# at 1.0 on clustered descriptors at 100k, and the file is ~0.6 KB per vector.
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128
# A search's beam must widen as the graph grows: at 1M clustered x 512-d (10,000 tight clusters) expansion
# 128 gave recall@10 0.80, with 6 of 30 queries stranded in another cluster; 256 gave 0.96, 553 0.9957 over
# 300 queries at 7.8 ms p50 (quiet 2-core AMD EPYC). Graph builds differ (concurrent adds): on another 1M
# graph 554 gave 0.996 (300 queries, one at 0), 800 the same, 1,000 0.9993 (none below 0.9) at 11.6 ms p50,
# 1,600 no better at 18.0 ms; a bench run's graph at 554 left 2 of 100 queries at 0 (recall 0.98). So
# EXPANSION_SEARCH is multiplied by 1 + EXPANSION_GROWTH * log2(graph rows / EXPANSION_SIZE_REFERENCE) past
# that size (x7.6 at 1M: 979), the form Elasticsearch's candidates follow. EXPANSION_BATCH is not: duplicates
# want the few nearest rows above a high bar, which the walk meets as soon as it reaches the query's own row.
EXPANSION_GROWTH = 2.0
EXPANSION_SIZE_REFERENCE = 100_000
# Large batches (duplicates' knn_many) search with half the expansion: bench/duplicates.py at 100k planted
# near-duplicates kept the recall of planted pairs at 1.0 and grouped in 45 s instead of 75 s (AMD EPYC, 2 cores).
EXPANSION_BATCH = 64
BATCH_QUERIES = 32  # queries in one call from which EXPANSION_BATCH applies
OVERFETCH = 4  # graph candidates per wanted hit, re-ranked with the float rows
MIN_CANDIDATES = 40
MAX_CANDIDATES = 4096  # beyond this a filtered graph search costs about what an exact scan does
REFETCH = 4  # how many times more candidates a query asks the graph for when its mask left too few
# A query's beam is at least this many times the candidates it asks for (usearch's own floor is 1x): at 50k
# clustered x 512-d, 40 queries, recall@k for k = 50 / 100 / 200 / 500 (the desktop shows 50 by default, up to
# 1,000) was 0.9995 / 0.993 / 0.949 / 0.968 with the beam at the candidate count, 1.0 / 0.997 / 0.984 / 0.995
# at twice. Below ~250 results at 1M the size-grown beam (979) is wider anyway. Not for large batches.
BEAM_PER_CANDIDATE = 2
# Masks of at most this many float32 values of rows (131,072 rows at 512-d, 16,384 at 4096-d) are gathered and
# scored exactly; larger ones are scored in place (every row, the masked ones dropped): memory stays flat.
SELECTIVE_FLOATS = 1 << 26
# Masks keeping at least GRAPH_SHARE of the rows go through the graph; below it, masks keeping more than
# CODES_MIN_ROWS rows scan the 8-bit codes of the rows they keep; the rest are scanned exactly. Measured at 1M
# clustered x 512-d, random masks, 30 queries, p50 and recall@10 against the exact scan (probe on the graph of
# bench/embedded_index.py; quiet 2-core AMD EPYC):
#   share kept          1 %     3 %     10 %    20 %    30 %    50 %    70 %
#   exact scan (ms)     7.1     22.5    64.0    99.5    99.6    107     105
#   codes (ms)          5.6     9.5     23.1    38.3    50.8    63.0    65.8    recall 1.0 throughout
#   graph (ms)          48.1    16.9    7.3     6.7     7.5     6.7     7.1
#   graph recall        0.74    0.69    0.95    0.993   0.997   1.0     1.0
# A few thousand rows are gathered and scored in about a millisecond, below the codes scan's fixed cost.
GRAPH_SHARE = 0.5
CODES_MIN_ROWS = 10_000
# The codes' per-dimension ranges (faiss's min/max) are taken from this many rows: faiss copies them twice.
CODES_TRAIN_ROWS = 1 << 17
# Large batches with a score bar of at least RANGE_MIN_SCORE are range searches of an IVF index (faiss
# IndexIVFScalarQuantizer, 8-bit, inner product) with about 4 sqrt(rows) inverted lists (faiss's guideline is
# 4-16 sqrt(N)), trained on RANGE_TRAIN_PER_LIST rows a list, RANGE_PROBES lists searched per query.
# Measured at 1M planted near-duplicates in random 512-d unit vectors (bench/duplicates.py; quiet 2-core AMD
# EPYC): the graph at expansion 64 found a query's own row for 30 % of the queries and 0.45 of the pairs at
# >= 0.95 (512: 84 % and 0.93, at 224 queries/s); the IVF with 4,096 lists found 0.998 of the pairs with 8
# probes and 1.0 with 32 at 3,280 queries/s, after 72 s to train and fill it (512 MB of codes at 1M x 512).
# Lower bars return too many rows a query for a range search (a cluster's worth): they stay on the graph.
RANGE_MIN_SCORE = 0.8
RANGE_MARGIN = 0.05  # the codes' scores are estimates: rows within this of the bar are re-scored exactly
RANGE_PROBES = 32
RANGE_TRAIN_PER_LIST = 40  # faiss warns below 39 training rows a list
GRAPH_MIN_ROWS = 20_000  # below this an exact scan is as fast as the graph: no graph is built
SCORE_BLOCK = 1 << 22  # float32 scores per block of an exact batched scan (16 MB)
ADD_BATCH = 10_000
# usearch's concurrent add() can leave a node that no search reaches (unum-cloud/USearch#735, open in 2.26.6):
# at 20k clustered x 512-d on 2 threads 3-10 rows in 20,000 never came back for their own vector, 1.6 % at
# 1k x 16-d. Building on one thread avoids it at twice the time; instead each added batch searches for its
# own rows with a narrow beam (a reachable row is its own nearest) and the rows it misses are removed and
# added again on one thread: 13 % of the build time, every row found again (quiet 2-core AMD EPYC).
RELINK_EXPANSION = 16

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total) vectors added to the graph
Result = tuple[np.ndarray, np.ndarray]  # per query: slots (int64) and cosine scores (float32), best first
Candidates = tuple[np.ndarray, bool]  # per query: allowed slots (int64) to re-rank; whether no more were there


def graph_path(data_dir: Path, generation: int, rows: int) -> Path:
    """The graph file covering slots [0, rows) of a generation's vector file."""
    return Path(data_dir) / f"ann-{generation}-{rows}.usearch"


def codes_path(data_dir: Path, generation: int, rows: int) -> Path:
    """The 8-bit codes of slots [0, rows) of a generation's vector file."""
    return Path(data_dir) / f"sq8-{generation}-{rows}.faiss"


def saved_files(data_dir: Path, generation: int | None = None, kind: str = "ann") -> list[tuple[int, int, Path]]:
    """(generation, rows, path) of every graph file (kind "ann") or codes file ("sq8") in `data_dir` (of one
    generation when given), sorted."""
    suffix = {"ann": "usearch", "sq8": "faiss"}[kind]
    found = []
    for entry in os.scandir(data_dir):
        match = re.fullmatch(rf"{kind}-(\d+)-(\d+)\.{suffix}", entry.name)
        if match and (generation is None or int(match[1]) == generation):
            found.append((int(match[1]), int(match[2]), Path(entry.path)))
    return sorted(found)


class VectorSearch:
    """kNN over the mapped rows of `vectors` (one generation), with the newest saved graph that fits.

    Not thread-safe on its own (the store serialises calls). Queries are float32 (m, dims) unit rows;
    scores are cosine similarities computed from the float rows.
    """

    def __init__(self, data_dir: Path, generation: int, vectors: VectorFile):
        self.data_dir = Path(data_dir)
        self.generation = generation
        self.vectors = vectors
        self.graph: Index | None = None
        self.covered = 0  # slots [0, covered) are in the graph (the dead among them filtered at search)
        self.lists: faiss.IndexIVFScalarQuantizer | None = None  # for range searches; slots [0, lists.ntotal)
        self.mapped_codes: faiss.IndexScalarQuantizer | None = None  # slots [0, covered), mapped by codes()
        self.unreadable: set[Path] = set()  # codes files found unreadable (warned about once)
        self.refresh()

    def refresh(self) -> None:
        """Map the newest saved graph of this generation that covers no more than the mapped rows."""
        fitting = [(rows, path) for _, rows, path in saved_files(self.data_dir, self.generation)
                   if rows <= self.vectors.rows]
        if not fitting or fitting[-1][0] == self.covered:
            return
        rows, path = fitting[-1]
        try:
            graph = Index.restore(str(path), view=True)
        except (OSError, RuntimeError, ValueError):
            return  # removed or replaced meanwhile by a newer save: the tail scan stays correct
        if graph is None:
            return
        self.graph, self.covered, self.mapped_codes = graph, rows, None  # codes() maps those of these rows

    def search(self, queries: np.ndarray, k: int, mask: np.ndarray | None = None, exact: bool = False,
               min_score: float | None = None, max_score: float | None = None,
               score_block: int = SCORE_BLOCK) -> list[Result]:
        """The k best slots for each query (float32 (m, dims)) among those where `mask` (bool (rows,),
        None: all) is true, with scores within [min_score, max_score]; best first, equal scores by slot.
        An exact scan scores at most `score_block` float32 values at a time (memory stays flat)."""
        matrix = self.vectors.matrix
        queries = np.asarray(queries, np.float32).reshape(-1, matrix.shape[1])
        rows = len(matrix)
        allowed = int(mask.sum()) if mask is not None else rows
        if k <= 0 or allowed == 0:
            return [_empty() for _ in queries]
        plan = "exact" if exact else self.plan(allowed, rows)
        if plan == "graph" and len(queries) >= BATCH_QUERIES and min_score is not None \
                and min_score >= RANGE_MIN_SCORE:
            return self._range(queries, k, mask, min_score, max_score)
        codes = self.codes() if plan == "codes" else None
        if plan == "exact" or (plan == "codes" and codes is None):
            return self._exact(queries, k, mask, allowed, min_score, max_score, score_block)
        wanted = max(k * OVERFETCH, MIN_CANDIDATES)
        if codes is not None:
            candidates = self._code_candidates(codes, queries, wanted, mask)
        else:
            candidates = self._graph_candidates(queries, wanted, mask, allowed / rows)
        tail = np.arange(self.covered, rows)
        if mask is not None:
            tail = tail[mask[self.covered :]]
        tail_scores = matrix[self.covered :][tail - self.covered] @ queries.T if len(tail) else None
        results, retry = [], []
        for n, q in enumerate(queries):
            slots, exhausted = candidates[n]
            slots = np.sort(slots)  # ascending slots read the file in order and break ties by slot
            scores = matrix[slots] @ q
            # Rows the candidates left out score below them (the tail is scored whole, so it does not count).
            lowest = scores.min() if len(scores) else -np.inf
            if tail_scores is not None:
                slots, scores = np.concatenate([slots, tail]), np.concatenate([scores, tail_scores[:, n]])
            best, best_scores = _top(slots, scores, k, min_score, max_score)
            if len(best) < k and not exhausted and (min_score is None or lowest >= min_score):
                retry.append(n)  # more rows may pass: candidates ran out first
            results.append((best, best_scores))
        if retry:
            exact_results = self._exact(queries[retry], k, mask, allowed, min_score, max_score, score_block)
            for n, result in zip(retry, exact_results, strict=True):
                results[n] = result
        return results

    def plan(self, allowed: int, rows: int) -> str:
        """How a mask keeping `allowed` of `rows` rows is searched: "graph" when it keeps at least GRAPH_SHARE
        of them, "codes" when more than CODES_MIN_ROWS rows, else (and always without a graph) "exact"."""
        if self.graph is None:
            return "exact"
        if allowed >= rows * GRAPH_SHARE:
            return "graph"
        return "codes" if allowed > CODES_MIN_ROWS else "exact"

    def selective_rows(self) -> int:
        """The most rows a mask may allow and still be gathered for an exact scan: SELECTIVE_FLOATS / dims."""
        return SELECTIVE_FLOATS // self.vectors.dims

    def codes(self) -> faiss.IndexScalarQuantizer | None:
        """The 8-bit codes of the graph's rows, memory-mapped (file pages, not process memory); None when
        the graph was saved without them or they cannot be read."""
        if self.mapped_codes is None:
            self.mapped_codes = self._read_codes()
        return self.mapped_codes

    def _read_codes(self) -> faiss.IndexScalarQuantizer | None:
        """The codes file of the graph's rows, mapped; None when there is none or it cannot be read (logged
        once a file): those filters then scan exactly, and `lacks_codes` has `extend` write it again."""
        import faiss  # here, not at the top: it loads its own OpenMP, and most searches never need it

        path = codes_path(self.data_dir, self.generation, self.covered)
        if self.graph is None or not path.exists():
            return None
        try:
            codes = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
            if codes.ntotal != self.covered:
                raise RuntimeError(f"it holds {codes.ntotal} rows, not {self.covered}")
        except RuntimeError as exc:
            if path not in self.unreadable:
                self.unreadable.add(path)
                log.warning("cannot read the search codes %s (%s): filters scan exactly until the next indexing run "
                            "writes them again", path, exc)
            return None
        return codes

    def _code_candidates(self, codes: faiss.IndexScalarQuantizer, queries: np.ndarray, wanted: int,
                         mask: np.ndarray | None) -> list[Candidates]:
        """For each query, the `wanted` best slots of [0, covered) that `mask` allows by the codes' inner
        products, and whether fewer were there."""
        import faiss

        params = None
        if mask is not None:
            bits = np.packbits(mask[: self.covered], bitorder="little")  # faiss reads bit i of byte i // 8
            selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))  # both must outlive the search
            params = faiss.SearchParameters(sel=selector)
        _, found = codes.search(np.ascontiguousarray(queries), wanted, params=params)
        return [(row[row >= 0], bool(row[-1] < 0)) for row in found]

    def _graph_candidates(self, queries: np.ndarray, wanted: int, mask: np.ndarray | None,
                          share: float) -> list[Candidates]:
        """For each query, the graph's nearest slots that `mask` allows (it keeps `share` of the rows), and
        whether the graph ran out of rows to give. Asks for `wanted` / share; a query left with fewer than
        half of `wanted` (removed rows crowd around it: deleted near-duplicates, a filter that removes its
        neighbourhood) asks again with REFETCH times as many, up to MAX_CANDIDATES: re-ranking needs a margin."""
        limit = min(MAX_CANDIDATES, self.covered)
        fetch = min(math.ceil(wanted / share), limit)
        batch = len(queries) >= BATCH_QUERIES
        candidates: list[Candidates | None] = [None] * len(queries)
        pending = np.arange(len(queries))
        while len(pending):
            self.graph.expansion_search = self.expansion(batch, fetch)
            found = self.graph.search(queries[pending], fetch, threads=1 if len(pending) == 1 else 0)
            # One query gives a Matches (keys (count,)), several a BatchMatches (keys padded to (m, fetch)).
            keys = np.atleast_2d(found.keys).astype(np.int64)
            counts = np.atleast_1d(getattr(found, "counts", len(found.keys)))
            again = []
            for row, n in enumerate(pending):
                slots, exhausted = keys[row, : counts[row]], bool(counts[row] < fetch)
                if mask is not None:
                    slots = slots[mask[slots]]
                if len(slots) < wanted // 2 and not exhausted and fetch < limit:
                    again.append(n)
                else:
                    candidates[n] = (slots, exhausted)
            pending, fetch = np.array(again, np.int64), min(fetch * REFETCH, limit)
        return candidates

    def expansion(self, batch: bool = False, candidates: int = 0) -> int:
        """The search beam (usearch's expansion_search): EXPANSION_BATCH for a query of a large batch, else
        EXPANSION_SEARCH grown past EXPANSION_SIZE_REFERENCE graph rows, and at least BEAM_PER_CANDIDATE
        times the `candidates` asked for."""
        if batch:
            return EXPANSION_BATCH
        growth = EXPANSION_GROWTH * math.log2(max(1.0, self.covered / EXPANSION_SIZE_REFERENCE))
        return max(math.ceil(EXPANSION_SEARCH * (1.0 + growth)), BEAM_PER_CANDIDATE * candidates)

    def extend(self, live: np.ndarray, progress: Progress | None = None) -> None:
        """Add the live slots (bool (rows,)) past the graph's end to it, save it and its codes as new
        files and map them; older files of this generation are removed. Builds the graph from scratch
        when there is none (slots [0, rows)), and none at all below `GRAPH_MIN_ROWS` live rows. A graph
        saved without codes gets them.

        Memory: the graph is loaded into process memory while it grows (~0.6 KB per vector at 512 d), and
        the codes while they are written (1 byte per value).
        """
        rows = self.vectors.rows
        start = self.covered if self.graph is not None else 0
        if self.graph is None and int(live.sum()) < GRAPH_MIN_ROWS:
            return
        if rows > start:
            self._extend_graph(live, start, progress)
        if self.lacks_codes():
            self._save_codes()

    def lacks_codes(self) -> bool:
        """Whether the graph has no readable codes (saved by a version before them, or damaged): `extend`
        writes them."""
        return self.graph is not None and self.codes() is None

    def _extend_graph(self, live: np.ndarray, start: int, progress: Progress | None) -> None:
        rows = self.vectors.rows
        if self.graph is not None:
            graph = Index.restore(str(graph_path(self.data_dir, self.generation, self.covered)), view=False)
        else:
            graph = Index(ndim=self.vectors.dims, metric="cos", dtype="i8", connectivity=CONNECTIVITY,
                          expansion_add=EXPANSION_ADD)
        slots = np.flatnonzero(live[start:rows]) + start
        for done in range(0, len(slots), ADD_BATCH):
            batch = slots[done : done + ADD_BATCH]
            rows_added = self.vectors.matrix[batch]
            graph.add(batch, rows_added)
            relink(graph, batch, rows_added)
            if progress is not None:
                progress(done + len(batch), len(slots))
        path = graph_path(self.data_dir, self.generation, rows)
        tmp = path.with_suffix(".tmp")
        graph.save(str(tmp))
        os.replace(tmp, path)
        del graph
        self.graph = None
        self.covered = 0
        self.refresh()
        self._remove_older("ann", rows)

    def _save_codes(self) -> None:
        """Write the codes of slots [0, covered): the newest older codes file of this generation with the
        rows since added, or new codes whose per-dimension ranges are those of CODES_TRAIN_ROWS rows spread
        over the file. Values outside the ranges are clipped to them; the float re-rank gives the scores."""
        import faiss

        matrix = self.vectors.matrix[: self.covered]
        codes = self._older_codes()
        if codes is None:
            codes = faiss.IndexScalarQuantizer(matrix.shape[1], faiss.ScalarQuantizer.QT_8bit,
                                               faiss.METRIC_INNER_PRODUCT)
            sample = np.linspace(0, len(matrix) - 1, min(len(matrix), CODES_TRAIN_ROWS)).astype(np.int64)
            codes.train(np.ascontiguousarray(matrix[np.unique(sample)]))
        for start in range(codes.ntotal, len(matrix), ADD_BATCH):  # ids are slots: added in order
            codes.add(np.ascontiguousarray(matrix[start : start + ADD_BATCH]))
        path = codes_path(self.data_dir, self.generation, self.covered)
        tmp = path.with_suffix(".tmp")
        faiss.write_index(codes, str(tmp))
        os.replace(tmp, path)
        self.mapped_codes = None
        self.unreadable.discard(path)
        self._remove_older("sq8", self.covered)

    def _remove_older(self, kind: str, rows: int) -> None:
        """Remove this generation's files of `kind` (saved_files) over fewer than `rows` rows."""
        for _, covered, old in saved_files(self.data_dir, self.generation, kind):
            if covered < rows:
                remove_quietly(old)

    def _older_codes(self) -> faiss.IndexScalarQuantizer | None:
        """The newest codes file of this generation over fewer rows than the graph, read into memory; None
        when there is none or it cannot be read whole."""
        import faiss

        older = [(rows, path) for _, rows, path in saved_files(self.data_dir, self.generation, "sq8")
                 if rows < self.covered]
        if not older:
            return None
        rows, path = older[-1]
        try:
            codes = faiss.read_index(str(path))
        except RuntimeError:
            return None
        return codes if codes.ntotal == rows else None

    def _range(self, queries: np.ndarray, k: int, mask: np.ndarray | None, min_score: float,
               max_score: float | None) -> list[Result]:
        """Every row the inverted lists score within RANGE_MARGIN of min_score, re-scored with the float
        rows; the k best that pass the bounds."""
        matrix = self.vectors.matrix
        limits, _, found = self.inverted_lists().range_search(queries, min_score - RANGE_MARGIN)
        results = []
        for n, q in enumerate(queries):
            slots = np.sort(found[limits[n] : limits[n + 1]])
            if mask is not None:
                slots = slots[mask[slots]]
            results.append(_top(slots, matrix[slots] @ q, k, min_score, max_score))
        return results

    def inverted_lists(self) -> faiss.IndexIVFScalarQuantizer:
        """The IVF index of range searches over every row, built on first use (training on a sample of rows
        with k-means takes ~45 s at 1M x 512 here, filling it ~27 s); rows appended since are added."""
        import faiss  # here, not at the top: most processes never range-search, and it loads its own OpenMP

        matrix = self.vectors.matrix
        if self.lists is None:
            count = max(1, min(round(4 * math.sqrt(len(matrix))), len(matrix) // RANGE_TRAIN_PER_LIST))
            coarse = faiss.IndexFlatIP(matrix.shape[1])
            lists = faiss.IndexIVFScalarQuantizer(coarse, matrix.shape[1], count, faiss.ScalarQuantizer.QT_8bit,
                                                  faiss.METRIC_INNER_PRODUCT)
            lists.nprobe = RANGE_PROBES
            sample = np.random.default_rng(0).choice(len(matrix), min(len(matrix), RANGE_TRAIN_PER_LIST * count),
                                                     replace=False)
            lists.train(np.ascontiguousarray(matrix[np.sort(sample)]))
            self.lists = lists
        for start in range(self.lists.ntotal, len(matrix), ADD_BATCH):  # ids are slots: added in order
            self.lists.add(np.ascontiguousarray(matrix[start : start + ADD_BATCH]))
        return self.lists

    def _exact(self, queries: np.ndarray, k: int, mask: np.ndarray | None, allowed: int, min_score: float | None,
               max_score: float | None, score_block: int) -> list[Result]:
        """`allowed`: the rows `mask` allows; a few are gathered and scored, else every row is scored."""
        matrix = self.vectors.matrix
        slots = np.flatnonzero(mask) if mask is not None and allowed <= self.selective_rows() else None
        source = matrix[slots] if slots is not None else matrix
        results = []
        step = max(1, score_block // max(1, len(source)))
        for start in range(0, len(queries), step):
            scores = queries[start : start + step] @ source.T
            if slots is None and mask is not None:
                scores[:, ~mask] = -np.inf
            for row in scores:
                where = slots if slots is not None else np.arange(len(row))
                keep = np.isfinite(row)
                results.append(_top(where[keep], row[keep], k, min_score, max_score))
        return results


def relink(graph: Index, keys: np.ndarray, vectors: np.ndarray) -> None:
    """Add again on one thread the `keys` (int64 (n,)) whose own rows (`vectors`, float32 (n, dims)) the
    graph does not find as their nearest: see RELINK_EXPANSION."""
    graph.expansion_search = RELINK_EXPANSION
    nearest = np.atleast_2d(graph.search(vectors, 1).keys)[:, 0].astype(np.int64)
    lost = np.flatnonzero(nearest != keys)
    if len(lost):
        log.debug("adding %d graph rows again that no search reached", len(lost))
        graph.remove(keys[lost])
        graph.add(keys[lost], vectors[lost], threads=1)


def _top(slots: np.ndarray, scores: np.ndarray, k: int, min_score: float | None,
         max_score: float | None) -> Result:
    """The k best (slot, score) pairs within the bounds, best first, ties by the lower slot."""
    keep = np.ones(len(scores), bool)
    if min_score is not None:
        keep &= scores >= min_score
    if max_score is not None:
        keep &= scores <= max_score
    slots, scores = slots[keep], scores[keep]
    if len(scores) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        slots, scores = slots[part], scores[part]
    order = np.lexsort((slots, -scores))
    return slots[order].astype(np.int64), scores[order].astype(np.float32)


def _empty() -> Result:
    return np.zeros(0, np.int64), np.zeros(0, np.float32)


def remove_quietly(path: Path) -> None:
    """Remove a file other processes may still map; on Windows that fails and the next save retries."""
    with contextlib.suppress(OSError):
        os.remove(path)
