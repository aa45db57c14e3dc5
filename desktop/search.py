"""The search presenter: the query trail (Back/Forward), the newest-wins rule and what an empty grid means.

Free of widgets (dupeGuru and Vorta keep presenters so): it talks to a `SearchView` and runs engine calls
through `run(job, done, failed)`, which the window backs with its search worker and a test with a plain call.
One state machine: IDLE (no query) -> LOADING (an outside image is read, previewed and embedded in one
worker call) -> SEARCHING (kNN) -> SHOWN or FAILED; a newer query or step supersedes an older one in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from core.images import ImageError
from core.store import Hit, ImageRecord, SearchFilter
from desktop.navigation import History
from desktop.query import PREVIEW_SIZE, LoadedSource, Query, Source, load_source, record_query
from desktop.thumbnails import decode_thumbnail

IDLE, WAITING, LOADING, SEARCHING, SHOWN, FAILED = "idle", "waiting", "loading", "searching", "shown", "failed"
# Why a grid is empty, each with its next step (the view words them).
EMPTY_INDEX, NO_MATCH, NO_INDEX = "empty_index", "no_match", "no_index"

Run = Callable[[Callable[[], Any], Callable[[Any], None], Callable[[Exception], None]], None]


class SearchView(Protocol):
    def show_loading(self, label: str) -> None: ...
    def show_query(self, query: Query | None) -> None: ...
    def show_query_error(self, text: str) -> None: ...
    def show_hits(self, hits: list[Hit], took_ms: float, empty: str | None, restore: Any) -> None: ...
    def show_trail(self, labels: list[str], current: int, can_back: bool, can_forward: bool) -> None: ...
    def search_params(self) -> tuple[int, SearchFilter]: ...
    def view_state(self) -> Any: ...
    def search_failed(self, exc: Exception, retry: Callable[[], None]) -> None: ...
    def query_failed(self, text: str, exc: Exception | None) -> None: ...


class SearchPresenter:
    def __init__(self, view: SearchView, run: Run):
        self.view = view
        self.run = run
        self.history: History[Query] = History()
        self.state = IDLE
        self.engine = None
        self._opening = True  # until the first engine is open or has failed: a dropped query waits for it
        self._identity = None
        self._waiting: Source | None = None
        self._source_seq = 0  # only the newest outside query is searched (a step in the trail supersedes it too)
        self._search_seq = 0  # only the newest search's results are shown
        self._view_states: dict[int, Any] = {}  # scroll and selection per trail step (by id of its Query)

    # -- the engine -------------------------------------------------------------------------------
    def engine_opening(self) -> None:
        self.engine, self._opening = None, True

    def engine_opened(self, engine) -> None:
        """A (new) engine: results of another model or from another index cannot be refined, so they go."""
        self._opening = False
        index = (engine.identity, engine.store.location())
        if self._identity is not None and index != self._identity:
            self.clear()
        self.engine, self._identity = engine, index
        if self._waiting is not None:
            source, self._waiting = self._waiting, None
            self.open_source(source)
        elif self.history.current is not None:
            self.search()

    def engine_failed(self) -> None:
        """No index: nothing shown may stay as if it were current (the next index may be another one)."""
        self._opening = False
        self.engine = None
        self.clear()
        if self._waiting is not None:
            self._waiting = None
            self._fail_query("No index is open, so there is nothing to search.", None)

    def clear(self) -> None:
        self._source_seq += 1
        self._search_seq += 1
        self.history.clear()
        self._view_states.clear()
        self.state = IDLE
        self.view.show_query(None)
        self.view.show_hits([], 0.0, None, None)
        self._show_trail()

    # -- queries ----------------------------------------------------------------------------------
    def open_source(self, source: Source) -> None:
        """A new query from outside (file, URL, image data): read, preview and embed it in one worker call."""
        self._source_seq += 1
        seq = self._source_seq
        self.view.show_loading(source.label)
        engine = self.engine
        if engine is None:
            if self._opening:
                self._waiting, self.state = source, WAITING  # searched as soon as the index is open
            else:
                self._fail_query("No index is open, so there is nothing to search.", None)
            return
        self.state = LOADING
        limit = int(engine.settings.max_upload_mb * 2**20)
        self.run(lambda: load_source(source, limit, engine), lambda loaded: self._loaded(seq, loaded),
                 lambda exc: self._load_failed(seq, source.label, exc))

    def _loaded(self, seq: int, loaded: LoadedSource) -> None:
        if seq != self._source_seq:
            return
        # A new outside image starts a new trail; Back/Forward walk the refinements from it.
        self.history.clear()
        self._view_states.clear()
        self.push(Query(loaded.label, loaded.preview, vector=loaded.vector, path=loaded.path,
                        details=loaded.details))

    def _load_failed(self, seq: int, label: str, exc: Exception) -> None:
        if seq != self._source_seq:
            return
        if isinstance(exc, ImageError):
            self._fail_query(f"{label}: {exc.reason}", None)
        else:
            self._fail_query(f"{label}: the search failed.", exc)

    def _fail_query(self, text: str, exc: Exception | None) -> None:
        # The grid keeps what the pane keeps: the previous query and its results stay (issue 14, minor).
        self.state = FAILED
        self.view.show_query(self.history.current)
        self.view.show_query_error(text)
        self.view.query_failed(text, exc)

    def refine(self, record: ImageRecord, preview=None) -> None:
        """Search from an indexed image by its stored vector (double-click, Enter, Find Similar)."""
        self._source_seq += 1  # supersedes a dropped query still loading
        query = record_query(record, preview)
        self.push(query)
        path = record.path

        def sharper(image) -> None:  # the grid's thumbnail first, a larger preview once decoded
            if query in self.history.items:
                better = replace(query, preview=image)
                self.history.items[self.history.items.index(query)] = better
                if (state := self._view_states.pop(id(query), None)) is not None:
                    self._view_states[id(better)] = state
                if self.history.current is better:
                    self.view.show_query(better)

        # A file gone since indexing keeps the grid's thumbnail; the search itself uses the stored vector.
        self.run(lambda: decode_thumbnail(path, PREVIEW_SIZE), sharper, lambda _exc: None)

    def push(self, query: Query) -> None:
        self._remember_view()
        self.history.push(query)
        self._show_current()

    def go_back(self) -> None:
        if self.history.can_back():
            self.go_to(self.history.index - 1)

    def go_forward(self) -> None:
        if self.history.can_forward():
            self.go_to(self.history.index + 1)

    def go_to(self, index: int) -> None:
        self._source_seq += 1
        self._remember_view()
        self.history.go(index)
        self._show_current()

    def _remember_view(self) -> None:
        if self.history.current is not None and self.state == SHOWN:
            self._view_states[id(self.history.current)] = self.view.view_state()

    def _show_current(self) -> None:
        self.view.show_query(self.history.current)
        self._show_trail()
        self.search()

    def _show_trail(self) -> None:
        self.view.show_trail([q.label for q in self.history.items], self.history.index, self.history.can_back(),
                             self.history.can_forward())

    # -- searching --------------------------------------------------------------------------------
    def search(self) -> None:
        """Run the current query with the view's k and filters; a stored vector makes this milliseconds."""
        query, engine = self.history.current, self.engine
        self._search_seq += 1
        if query is None or engine is None:
            return
        seq, (k, filters) = self._search_seq, self.view.search_params()
        self.state = SEARCHING
        started = time.perf_counter()

        def job() -> tuple[list[Hit], int | None]:
            hits = (engine.similar(query.ref_id, k, filters) if query.ref_id is not None
                    else engine.search_vector(query.vector, k, filters))
            return hits, (None if hits else engine.store.count())  # an empty grid must say why

        self.run(job, lambda result: self._searched(seq, query, result, started),
                 lambda exc: self._search_failed(seq, exc))

    def _searched(self, seq: int, query: Query, result: tuple[list[Hit], int | None], started: float) -> None:
        if seq != self._search_seq:
            return
        hits, count = result
        empty = None if hits else EMPTY_INDEX if count == 0 else NO_MATCH
        self.state = SHOWN
        self.view.show_hits(hits, 1000 * (time.perf_counter() - started), empty, self._view_states.get(id(query)))

    def _search_failed(self, seq: int, exc: Exception) -> None:
        if seq == self._search_seq:
            self.state = FAILED
            self.view.search_failed(exc, self.search)
