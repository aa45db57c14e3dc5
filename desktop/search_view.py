"""The window's side of the search presenter (desktop/search.py): puts its decisions on the widgets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QItemSelectionModel

from core.store import Hit, SearchFilter
from desktop.index_widgets import plural
from desktop.query import Query
from desktop.search import EMPTY_INDEX, NO_MATCH

HINT_START = "Drop an image on the left, paste one (Ctrl+V) or open a file (Ctrl+O) to find similar images."
HINT_EMPTY_INDEX = "The index is empty, so there is nothing to find yet. Add a folder of images to it."
HINT_NO_INDEX = "No index is open. Check the index in Settings (Ctrl+,)."
HINT_NOTHING = "No results."


class WindowSearchView:
    def __init__(self, window):
        self.w = window

    def show_loading(self, label: str) -> None:
        self.w.pane.show_loading(label)
        self.w.statusBar().showMessage("Searching…")

    def show_query(self, query: Query | None) -> None:
        if query is None:
            self.w.pane.clear()
            self.w.setWindowTitle("Image Search")
        else:
            self.w.pane.show_query(query)
            self.w.setWindowTitle(f"{query.label} — Image Search")

    def show_query_error(self, text: str) -> None:
        self.w.statusBar().clearMessage()
        self.w.pane.show_error(text)

    def query_failed(self, text: str, exc: Exception | None) -> None:
        if exc is not None:
            self.w.errors.handle(exc)
        self.w.query_failed.emit(text)

    def show_hits(self, hits: list[Hit], took_ms: float, empty: str | None, restore: Any) -> None:
        w = self.w
        current = w.search.history.current
        w.model.set_query_path(current.path if current is not None else None)
        w.model.set_hits(hits)
        if restore is not None:
            self._restore(restore)
        else:
            w.view.scrollToTop()
        if empty == EMPTY_INDEX:
            w.view.set_placeholder(HINT_EMPTY_INDEX, w.act.index)
        elif empty == NO_MATCH:
            w.view.set_placeholder(f"No results within these limits: {self._limits()}.", w.act.clear_filters)
        elif current is None:
            self.show_start_hint()
        else:
            w.view.set_placeholder(HINT_NOTHING)
        w.result_count.setText(f"{plural(len(hits), 'result')} · {took_ms:.0f} ms" if current is not None else "")
        w.statusBar().clearMessage()
        w.update_actions()
        if current is not None:
            w.errors.clear()
            w.results_shown.emit(len(hits))

    def show_start_hint(self) -> None:
        w = self.w
        if w.engine is None and w.session.state == "failed":
            w.view.set_placeholder(HINT_NO_INDEX, w.act.settings)
        elif w.image_count == 0:
            w.view.set_placeholder(HINT_EMPTY_INDEX, w.act.index)
        else:
            w.view.set_placeholder(HINT_START)

    def update_placeholder_action(self, enabled: bool) -> None:
        self.w.view.placeholder_button.setEnabled(enabled or self.w.view.placeholder_action is not self.w.act.index)

    def _limits(self) -> str:
        f = self.w.controls.search_filter()
        parts = []
        if f.min_score is not None or f.max_score is not None:
            parts.append(f"similarity {f.min_score or 0:.3f} to {1 if f.max_score is None else f.max_score:.3f}")
        if f.text:
            parts.append(f"names with “{f.text}”")
        return " and ".join(parts) or "none set"

    def show_trail(self, labels: list[str], current: int, can_back: bool, can_forward: bool) -> None:
        self.w.breadcrumb.set_trail(labels, current)
        self.w.act.back.setEnabled(can_back)
        self.w.act.forward.setEnabled(can_forward)

    def search_params(self) -> tuple[int, SearchFilter]:
        self.w.controls.settle()
        return self.w.controls.k.value(), self.w.controls.search_filter()

    def view_state(self) -> Any:
        """Scroll position and selected rows of the grid, restored when Back/Forward return to it."""
        view = self.w.view
        rows = sorted(i.row() for i in view.selectionModel().selectedIndexes())
        return view.verticalScrollBar().value(), rows, view.currentIndex().row()

    def _restore(self, state: Any) -> None:
        view, model = self.w.view, self.w.model
        scroll, rows, current = state
        view.doItemsLayout()  # the scroll range is known only once the grid is laid out
        if 0 <= current < model.rowCount():
            view.setCurrentIndex(model.index(current))
        selection = view.selectionModel()
        selection.clearSelection()
        for row in rows:
            if row < model.rowCount():
                selection.select(model.index(row), QItemSelectionModel.SelectionFlag.Select)
        view.verticalScrollBar().setValue(scroll)

    def search_failed(self, exc: Exception, retry: Callable[[], None]) -> None:
        self.w.statusBar().clearMessage()
        self.w.errors.handle(exc, retry=retry)
