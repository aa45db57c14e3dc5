"""The search presenter without widgets: a recording view, engine calls run at once or held back."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

pytest.importorskip("PySide6")

from core.config import Settings  # noqa: E402
from core.store import Hit, ImageRecord, SearchFilter  # noqa: E402
from desktop.query import from_path  # noqa: E402
from desktop.search import EMPTY_INDEX, FAILED, IDLE, NO_MATCH, SHOWN, SearchPresenter  # noqa: E402


def record(n: int) -> ImageRecord:
    return ImageRecord(id=f"id{n}", path=f"/photos/p{n}.jpg", name=f"p{n}.jpg", folder="/photos", size=10,
                       mtime_ns=0, hash="h", width=4, height=3)


class FakeStore:
    def __init__(self, count: int):
        self._count = count

    def count(self) -> int:
        return self._count

    def location(self) -> str:
        return "/index"


@dataclass
class FakeEngine:
    count: int = 5
    identity: str = "gem-random"
    settings: Settings = field(default_factory=lambda: Settings(weights="random"))

    def __post_init__(self):
        self.store = FakeStore(self.count)

    def similar(self, ref, k, filters):
        if not self.count or (filters and filters.min_score):
            return []
        return [Hit(record(int(ref[2:]) + n), 1 - n / 10) for n in range(min(k, self.count))]


class RecordingView:
    def __init__(self):
        self.hits, self.trail, self.errors, self.failed, self.query = None, None, [], [], "unset"
        self.params = (10, SearchFilter())
        self.state, self.restored = ("scroll", 7), None

    def show_loading(self, label): self.query = f"loading {label}"
    def show_query(self, query): self.query = query.label if query is not None else None
    def show_query_error(self, text): self.errors.append(text)
    def show_trail(self, labels, current, can_back, can_forward): self.trail = (labels, current, can_back, can_forward)
    def search_params(self): return self.params
    def view_state(self): return self.state
    def search_failed(self, exc, retry): self.failed.append(exc)
    def query_failed(self, text, exc): self.failed.append(text)

    def show_hits(self, hits, took_ms, empty, restore):
        self.hits, self.empty, self.restored = [h.record.name for h in hits], empty, restore


class HeldRun:
    """Runs engine calls when told to, in order: as the search worker does, later."""

    def __init__(self):
        self.calls = []

    def __call__(self, job, done, failed):
        self.calls.append((job, done, failed))

    def finish_all(self):
        while self.calls:
            job, done, failed = self.calls.pop(0)
            try:
                result = job()
            except Exception as exc:  # noqa: BLE001 - passed on as the worker does
                failed(exc)
            else:
                done(result)


@pytest.fixture
def presenter():
    view, run = RecordingView(), HeldRun()
    p = SearchPresenter(view, run)
    p.engine_opened(FakeEngine())
    return p, view, run


def test_refines_make_a_trail_that_back_and_forward_walk(presenter):
    p, view, run = presenter
    assert p.state == IDLE
    p.refine(record(1))
    run.finish_all()
    p.refine(record(2))
    run.finish_all()
    assert p.state == SHOWN and view.hits[0] == "p2.jpg" and view.trail == (["p1.jpg", "p2.jpg"], 1, True, False)
    p.go_back()
    run.finish_all()
    assert view.hits[0] == "p1.jpg" and view.trail == (["p1.jpg", "p2.jpg"], 0, False, True)
    assert view.restored == ("scroll", 7)  # the grid as it was left: scroll position and selection
    p.go_back()  # nothing before the first step: nothing happens
    assert not run.calls


def test_only_the_newest_search_is_shown(presenter):
    p, view, run = presenter
    p.refine(record(1))
    p.refine(record(3))
    run.finish_all()  # the first search's answer arrives after the second was asked for
    assert view.hits[0] == "p3.jpg"


def test_an_empty_grid_says_why(presenter):
    p, view, run = presenter
    view.params = (10, SearchFilter(min_score=0.5))
    p.refine(record(1))
    run.finish_all()
    assert view.hits == [] and view.empty == NO_MATCH
    p.engine_opened(FakeEngine(count=0, identity="other"))  # another model: the old trail goes
    assert view.trail == ([], -1, False, False) and view.query is None
    p.refine(record(1))
    run.finish_all()
    assert view.empty == EMPTY_INDEX


def test_a_failed_query_keeps_the_previous_one(presenter, tmp_path):
    p, view, run = presenter
    p.refine(record(1))
    run.finish_all()
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a picture")
    p.open_source(from_path(str(notes)))
    run.finish_all()
    assert p.state == FAILED and view.query == "p1.jpg" and view.hits[0] == "p1.jpg"
    assert view.errors == ["notes.jpg: not a recognised image format"]


def test_a_query_dropped_before_the_index_opens_waits_for_it(tmp_path):
    view, run = RecordingView(), HeldRun()
    p = SearchPresenter(view, run)
    notes = tmp_path / "notes.jpg"
    notes.write_text("x")
    p.open_source(from_path(str(notes)))
    assert view.query == "loading notes.jpg" and not run.calls
    p.engine_failed()  # no index after all: said, not kept waiting
    assert view.errors == ["No index is open, so there is nothing to search."]
    p.engine_opened(FakeEngine())
    p.refine(record(4))
    run.finish_all()
    assert view.hits[0] == "p4.jpg"


def test_changing_the_count_while_a_query_loads_does_not_drop_it(presenter, tmp_path):
    p, view, run = presenter
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a picture")
    p.open_source(from_path(str(notes)))
    p.search()  # the count or a filter changed while the image was loading
    run.finish_all()
    assert view.errors == ["notes.jpg: not a recognised image format"]
