"""The main window: query pane, result grid, trail, status bar; it shows what three controllers decide.

The search presenter (desktop/search.py) owns the query trail, the session (desktop/session.py) the engine,
model and API server, the jobs controller (desktop/indexing.py) the engine's one job queue. Nothing here runs
VGG16, decodes full images or touches the index: engine calls go to the search worker or the job queue.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QCloseEvent, QDesktopServices, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMainWindow, QMessageBox, QWidget

from core.config import Settings
from core.model import Extractor
from core.thumbnails import THUMBNAIL_SIZE
from desktop import folders, status_bar
from desktop.actions import build_actions
from desktop.details import DetailsPanel, QuickLook
from desktop.duplicates_dialog import DuplicatesDialog
from desktop.errors import ErrorPresenter, about_text
from desktop.folder_manager import FolderManager
from desktop.indexing import JobsController
from desktop.layout import build_central
from desktop.preferences import Choices, Preferences
from desktop.query import source_from_mime
from desktop.result_delegate import THUMB
from desktop.results_view import SORTS, ResultsModel
from desktop.search import SearchPresenter
from desktop.search_view import WindowSearchView
from desktop.session import OPEN, Session
from desktop.settings_dialog import SettingsDialog
from desktop.status_bar import build_status_bar
from desktop.tags import TagsDialog
from desktop.thumbnails import ThumbnailLoader, thumbnail_key
from desktop.worker import WORKER_NICE, Worker

COUNT_EVERY_S = 1.0  # the image count refreshes this often while indexing
DEFAULT_SIZE = QSize(1280, 800)  # the first window, where the screen has room; closing saves the user's own
SCREEN_SHARE = 0.9  # of the screen's free area at most: room for the title bar and frame the size leaves out


def first_size(available: QSize) -> QSize:
    """The window's size at its first launch: DEFAULT_SIZE, shrunk to SCREEN_SHARE of `available` (the
    screen less its panels and docks, QScreen.availableGeometry; device-independent pixels) where that is
    smaller: a 1366x768 laptop screen got a window taller than itself."""
    return DEFAULT_SIZE.boundedTo(QSize(int(available.width() * SCREEN_SHARE), int(available.height() * SCREEN_SHARE)))


class MainWindow(QMainWindow):
    engine_ready = Signal()
    engine_failed = Signal(str)
    query_failed = Signal(str)
    results_shown = Signal(int)
    index_finished = Signal(dict)  # the finished index or remove job's snapshot (core.jobs)
    index_progressed = Signal(dict)  # a running job's snapshot

    def __init__(self, base: Settings, prefs: Preferences, *, locked: Collection[str] = frozenset(),
                 extractor: Extractor | None = None, thumbnail_dir: Path | None = None, preload_model: bool = True,
                 serve_api: bool = True):
        """`base`: settings from flags, environment and config file; `prefs` overlays the user's choices
        except for `locked` keys. `extractor`: an already built model to reuse (tests share one)."""
        super().__init__()
        self.setWindowTitle("Image Search")
        self.setAcceptDrops(True)
        self.prefs = prefs
        self.base = base
        self.locked = frozenset(locked)
        self.settings_dialog: SettingsDialog | None = None
        self.duplicates_dialog: DuplicatesDialog | None = None
        self.folder_box: QMessageBox | None = None
        self.image_count: int | None = None
        # Below the GUI thread's priority: drawing and input come first on a machine kept busy by VGG16.
        self.searcher = Worker("search", self, nice=WORKER_NICE)
        dpr = self.devicePixelRatioF()
        self.loader = ThumbnailLoader(round(THUMB * dpr), thumbnail_dir, self)
        self.model = ResultsModel(self.loader, dpr, self)
        self.model.sort = prefs.sort if prefs.sort in SORTS else "similarity"
        self.search_view = WindowSearchView(self)
        self.search = SearchPresenter(self.search_view, self.searcher.call)
        build_central(self)
        self.details = DetailsPanel(self)
        # The panel's preview: twice the grid's thumbnail, read from the same disk cache.
        self.preview_loader = ThumbnailLoader(round(THUMBNAIL_SIZE * dpr), thumbnail_dir, self)
        self.preview_loader.loaded.connect(self._preview_loaded)
        self._preview_key: str | None = None
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.details)
        self.details.hide()  # shown from View → Details Panel; restoreState below brings back the user's choice
        self.quick_look_dialog: QuickLook | None = None
        self.folder_manager: FolderManager | None = None
        self.act = build_actions(self)
        self.back_button.setDefaultAction(self.act.back)
        self.forward_button.setDefaultAction(self.act.forward)
        build_status_bar(self)
        self.jobs = JobsController(self.job_status, self)
        self.session = Session(prefs.choices(base, self.locked), self.searcher, self.jobs, extractor=extractor,
                               preload_model=preload_model, serve_api=serve_api, parent=self)
        self.errors = ErrorPresenter(self, self.open_settings)
        self.searcher.failed_unhandled.connect(self.errors.handle)
        self.retry_button.clicked.connect(self.errors.retry)
        self._connect()
        self.search_view.show_trail([], -1, False, False)
        self.update_actions()
        geometry, state = prefs.geometry()
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(first_size(self.screen().availableGeometry().size()))
        if state is not None:
            self.restoreState(state)
        if (sizes := prefs.splitter_sizes()) is not None:
            self.splitter.setSizes(sizes)
        QApplication.instance().installEventFilter(self)  # mouse back/forward anywhere in the window
        self.view.said.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.view.tags_requested.connect(self.edit_tags)
        QTimer.singleShot(0, self.session.open)  # once the window is up: opening a server index may take seconds

    def _connect(self) -> None:
        s = self.session
        s.opening.connect(self._engine_opening)
        s.opened.connect(self._engine_opened)
        s.failed.connect(self._engine_failed)
        s.model_changed.connect(self._show_model)
        s.model_failed.connect(self.errors.handle)
        s.info_changed.connect(self._show_info)
        s.info_failed.connect(lambda exc: self.errors.handle(exc, retry=self.session.refresh_info))
        s.api_changed.connect(self._show_api)
        self.jobs.progressed.connect(self._job_progressed)
        self.jobs.finished.connect(self._job_finished)
        self.jobs.busy_changed.connect(lambda _busy: self.update_actions())
        self.view.selectionModel().currentChanged.connect(lambda *_: self._show_details())
        self.view.selectionModel().selectionChanged.connect(lambda *_: self._show_details())
        self.details.visibilityChanged.connect(lambda _shown: self._show_details())
        self.model.modelReset.connect(self._show_details)

    # == what the controllers say ===================================================================
    @property
    def engine(self):
        return self.session.engine

    @property
    def model_ready(self) -> bool:
        return self.session.model_warm

    @property
    def choices(self) -> Choices:
        return self.session.choices

    @property
    def indexing(self) -> bool:
        return self.jobs.busy

    def _engine_opening(self) -> None:
        self.search.engine_opening()
        self.details.set_engine(None, None)
        self.errors.clear()
        self.status_index.setText("Opening index…")
        self.update_actions()

    def _engine_opened(self, engine) -> None:
        self.search.engine_opened(engine)
        self.details.set_engine(engine, self.searcher.call)
        self.update_actions()
        self.engine_ready.emit()

    def _engine_failed(self, exc: Exception) -> None:
        self.status_index.setText("No index")
        self.image_count = None
        self.search.engine_failed()
        self.details.set_engine(None, None)
        self.update_actions()
        self.errors.handle(exc, retry=self.session.open)
        self.engine_failed.emit(str(exc))

    def _show_model(self) -> None:
        status_bar.show_model(self, *self.session.model_text())

    def _show_info(self, info: dict) -> None:
        status_bar.show_info(self, info)
        self.image_count = info["count"]
        if self.search.history.current is None:
            self.search_view.show_start_hint()

    def _show_api(self) -> None:
        status_bar.show_api(self, self.session.api, self.session.api_error)
        self.update_actions()

    def _job_progressed(self, job: dict) -> None:
        self.index_progressed.emit(job)
        if self.session.info_time + COUNT_EVERY_S <= time.monotonic():
            self.session.refresh_info()

    def _job_finished(self, job: dict) -> None:
        if job["kind"] == "duplicates":
            return
        if job["kind"] == "remove" and job["state"] == "done":
            for folder in job["paths"]:
                self.prefs.remove_root(folder)
        if job["kind"] == "index" and job["state"] == "done":
            for folder in job["paths"]:
                self.prefs.folder_scanned(folder, time.time())
        self.session.refresh_info()
        if job["state"] == "failed" and job["kind"] == "index":
            self.errors.show_job_failure(job, retry=lambda: self.start_index(job["paths"]))
        report = job.get("report") or {}
        if (report.get("indexed") or report.get("removed")) and self.search.history.current is not None:
            self.search.search()  # new images may belong in the results
        self.index_finished.emit(job)

    # == user actions ===============================================================================
    def open_source(self, source) -> None:
        """A query from the pane, a drop or the command line; a folder is offered for indexing instead."""
        if source.path is not None and os.path.isdir(source.path):
            folders.offer_to_index(self, source.path)
        else:
            self.search.open_source(source)

    def refine(self, record, hit=None) -> None:
        thumbnail = self.model.thumbnail(hit) if hit is not None else None
        self.search.refine(record, thumbnail.toImage() if thumbnail is not None else None)

    def refine_selected(self) -> None:
        if hits := self.view.selected_hits():
            self.refine(hits[0].record, hits[0])

    def edit_tags(self) -> None:
        """Tags… for the selected results: add or remove tags on all of them at once."""
        hits = self.view.selected_hits()
        if not hits or self.engine is None:
            return
        dialog = TagsDialog(self.engine, [h.record.id for h in hits], self.searcher.call, self)
        dialog.applied.connect(self.details.reload_tags)
        dialog.applied.connect(lambda: self.statusBar().showMessage(
            f"Tags saved for {len(hits)} image{'s' * (len(hits) != 1)}.", 5000))
        dialog.open()

    def set_sort(self, key: str) -> None:
        """Order the results by a key of SORTS; the choice is kept for the next launch."""
        self.model.set_sort(key)
        self.prefs.sort = key
        for action in self.act.sorts.actions():
            action.setChecked(action.data() == key)

    def current_hit(self):
        index = self.view.currentIndex()
        return self.model.hit(index) if index.isValid() and self.view.selectionModel().isSelected(index) else None

    def _show_details(self) -> None:
        if not self.details.isVisible():
            return
        hit = self.current_hit()
        self._preview_key = thumbnail_key(hit.record) if hit is not None else None
        self.details.show_hit(hit, self.model.thumbnail(hit) if hit is not None else None)
        if hit is not None:
            self.preview_loader.request(hit.record)

    def _preview_loaded(self, key: str, image) -> None:
        if key == self._preview_key:
            self.details.set_preview(image, self.devicePixelRatioF())

    def quick_look(self) -> None:
        hit = self.current_hit()
        if hit is None:
            return
        if self.quick_look_dialog is not None:
            self.quick_look_dialog.close()
        self.quick_look_dialog = QuickLook(hit, self.model.thumbnail(hit), self)
        self.quick_look_dialog.open()

    def manage_folders(self) -> None:
        if self.folder_manager is None:
            self.folder_manager = FolderManager(self)
        self.folder_manager.refresh()
        self.folder_manager.show()
        self.folder_manager.raise_()

    def focus_filter(self) -> None:
        self.controls.text_filter.setFocus()
        self.controls.text_filter.selectAll()

    def start_index(self, roots: list[str], prune_missing: bool = False, done=None) -> None:
        """Index `roots` in the engine's job queue; `done(IndexReport)` when it finishes (see JobsController)."""
        if self.session.state != OPEN or self.jobs.busy:
            self.statusBar().showMessage("Indexing is already running." if self.jobs.busy else "No index is open.",
                                         5000)
            return
        self.session.ensure_model()  # shows "Loading the model…"; the job waits for the same model
        self.jobs.index(roots, prune_missing, done)

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.choices, self.locked, self.searcher, self)
        dialog.accepted.connect(lambda: self.apply_choices(dialog.choices()))
        self.settings_dialog = dialog
        dialog.open()  # window-modal without a nested event loop: the workers' results keep arriving

    def apply_choices(self, choices: Choices) -> None:
        """Save the dialog's choices and apply them: a new index or model reopens the engine, which stops
        any job first and clears results of another model (see Session.open and SearchPresenter)."""
        self.prefs.save_choices(choices, self.base, self.locked)
        if self.jobs.busy and choices.engine_changed(self.choices):
            self.statusBar().showMessage("Stopping indexing to apply the new settings…", 10000)
        self.session.apply(choices)

    def find_duplicates(self) -> None:
        if self.session.state != OPEN:
            return
        if self.duplicates_dialog is not None:
            self.duplicates_dialog.close()
        dialog = DuplicatesDialog(self.engine, self.loader, self)
        dialog.find_similar.connect(self.refine)
        dialog.files_changed.connect(self._duplicates_acted)
        self.duplicates_dialog = dialog
        dialog.show()
        dialog.find()

    def _duplicates_acted(self) -> None:
        """Files were trashed, moved or brought back (the engine updated the index): show the index as it is."""
        self.session.refresh_info()
        if self.search.history.current is not None:
            self.search.search()

    def open_web_page(self) -> None:
        if self.session.api is not None:
            QDesktopServices.openUrl(QUrl(self.session.api.url))

    def about(self) -> None:
        QMessageBox.about(self, "About Image Search", about_text(self.engine))

    # == window =====================================================================================
    def update_actions(self) -> None:
        ready = self.session.state == OPEN
        for action in (self.act.index, self.act.rescan, self.act.remove, self.act.duplicates, self.act.folders):
            action.setEnabled(ready and not self.jobs.busy)
        self.act.web.setEnabled(self.session.api is not None)
        self.act.similar.setEnabled(bool(self.view.selected_hits()))
        self.act.quick_look.setEnabled(bool(self.view.selected_hits()))
        self.act.tags.setEnabled(ready and bool(self.view.selected_hits()))
        self.search_view.update_placeholder_action(ready and not self.jobs.busy)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # The mouse's back and forward buttons walk the trail, as in a browser, over any widget of the window.
        if event.type() == QEvent.Type.MouseButtonRelease and isinstance(watched, QWidget) \
                and watched.window() is self:
            if event.button() == Qt.MouseButton.BackButton:
                self.search.go_back()
                return True
            if event.button() == Qt.MouseButton.ForwardButton:
                self.search.go_forward()
                return True
        return super().eventFilter(watched, event)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        # Anywhere in the window is a drop target, except dragging a result within the grid itself.
        if event.source() is not self.view and source_from_mime(event.mimeData()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        if self.pane.take(event.mimeData()):
            event.acceptProposedAction()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.ActivationChange and self.isActiveWindow() and self.engine is not None:
            self.session.refresh_info()  # another process (the CLI) may have indexed meanwhile

    def closeEvent(self, event: QCloseEvent) -> None:
        self.prefs.save_geometry(self.saveGeometry(), self.saveState())
        self.prefs.save_splitter_sizes(self.splitter.sizes())
        self.prefs.result_count = self.controls.k.value()
        self.jobs.cancel()
        self.hide()  # the wait below (at most one indexing batch) happens with no frozen window on screen
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop the API server and the jobs, let the search worker finish its call, close the index."""
        if self.session.state == "closed":
            return
        self.controls.settle()
        QApplication.instance().removeEventFilter(self)
        # Dialogs first: a duplicates action in progress stops between files before the index closes.
        for dialog in (self.settings_dialog, self.duplicates_dialog, self.jobs.report_dialog, self.errors.box,
                       self.quick_look_dialog, self.folder_manager):
            if dialog is not None:
                dialog.close()
        self.session.shutdown()
        self.loader.shutdown()
        self.preview_loader.shutdown()
