"""The main window's central widgets: query pane | (trail, search controls, result grid), in a splitter."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QSplitter, QToolButton, QVBoxLayout, QWidget

from desktop.navigation import Breadcrumb
from desktop.query_pane import QueryPane
from desktop.results_view import ResultsView
from desktop.search_controls import SearchControls


def build_central(w) -> None:
    """Makes w.pane, w.view, w.back_button, w.forward_button, w.breadcrumb, w.result_count, w.controls and
    w.splitter, and connects them to the window's search presenter `w.search`."""
    w.pane = QueryPane()
    w.pane.source_chosen.connect(w.open_source)
    w.view = ResultsView(w.model)
    w.view.setObjectName("results")
    w.view.refine_requested.connect(lambda hit: w.refine(hit.record, hit))
    w.view.selectionModel().selectionChanged.connect(lambda *_: w.update_actions())
    w.back_button = QToolButton()
    w.forward_button = QToolButton()
    for button in (w.back_button, w.forward_button):
        button.setAutoRaise(True)
    w.breadcrumb = Breadcrumb()
    w.breadcrumb.jumped.connect(w.search.go_to)
    w.result_count = QLabel()
    w.result_count.setObjectName("resultCount")
    w.controls = SearchControls(w.prefs.result_count)
    w.controls.changed.connect(w.search.search)

    trail = QHBoxLayout()
    trail.addWidget(w.back_button)
    trail.addWidget(w.forward_button)
    trail.addWidget(w.breadcrumb, 1)
    trail.addWidget(w.result_count)
    trail.addWidget(w.controls.text_filter)
    header = QWidget()
    header.setObjectName("resultsHeader")
    header_layout = QVBoxLayout(header)
    header_layout.setContentsMargins(10, 6, 10, 2)
    header_layout.setSpacing(4)
    header_layout.addLayout(trail)
    header_layout.addWidget(w.controls)

    right = QWidget()
    right_layout = QVBoxLayout(right)
    right_layout.setContentsMargins(0, 0, 0, 0)
    right_layout.setSpacing(0)
    right_layout.addWidget(header)
    right_layout.addWidget(w.view, 1)

    w.splitter = QSplitter()
    w.splitter.setObjectName("mainSplitter")
    w.splitter.addWidget(w.pane)
    w.splitter.addWidget(right)
    w.splitter.setStretchFactor(1, 1)
    w.splitter.setSizes([300, 980])
    w.splitter.setChildrenCollapsible(False)
    w.setCentralWidget(w.splitter)
