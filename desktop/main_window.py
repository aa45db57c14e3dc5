"""The main window: query pane, result grid, menus, status bar; glue between user actions and the workers.

Nothing here runs TensorFlow, decodes full images or touches the index: every engine call goes to a
Worker (search or index thread) and comes back as a callback in the GUI thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QImage,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.config import Settings
from core.engine import Engine
from core.images import ImageError
from core.indexer import IndexProgress, IndexReport
from core.model import Extractor, keras_cache_dir
from core.store import Hit, IdentityMismatch, ImageRecord, StoreError
from desktop.duplicates_dialog import DuplicatesDialog
from desktop.errors import about_text, fix_dialog
from desktop.indexing import IndexStatus, ReportDialog
from desktop.navigation import Breadcrumb, History
from desktop.preferences import Choices, Preferences
from desktop.query import (
    PREVIEW_SIZE,
    LoadedSource,
    Query,
    Source,
    load_source,
    record_query,
    source_from_mime,
)
from desktop.query_pane import QueryPane
from desktop.results_view import THUMB, ResultsModel, ResultsView
from desktop.search_controls import SearchControls
from desktop.settings_dialog import SettingsDialog
from desktop.style import icon
from desktop.thumbnails import ThumbnailLoader, decode_thumbnail
from desktop.worker import Worker, open_engine, warm_up

WORKER_NICE = 5
PROGRESS_EVERY_S = 0.05  # at most 20 progress updates a second reach the GUI thread
COUNT_EVERY_S = 1.0  # the image count refreshes this often while indexing
HINT_EMPTY = "Drop an image on the left, paste one (Ctrl+V) or open a file (Ctrl+O) to find similar images."
HINT_NO_INDEX = "The index is empty. Add a folder of images: File → Index Folder… (Ctrl+I)."
HINT_NO_RESULTS = "No results within these limits: widen the similarity range or clear the filter."


class MainWindow(QMainWindow):
    engine_ready = Signal()
    engine_failed = Signal(str)
    query_failed = Signal(str)
    results_shown = Signal(int)
    index_finished = Signal(object)  # IndexReport
    index_progressed = Signal(object)  # IndexProgress, emitted in the indexing thread (queued to this one)

    def __init__(
        self,
        base: Settings,
        prefs: Preferences,
        *,
        locked: Collection[str] = frozenset(),
        extractor: Extractor | None = None,
        thumbnail_dir: Path | None = None,
        preload_model: bool = True,
        serve_api: bool = True,
    ):
        """`base`: settings from flags, environment and config file; `prefs` overlays the user's choices
        except for `locked` keys. `extractor`: an already built model to reuse (tests share one)."""
        super().__init__()
        self.setWindowTitle("Image Search")
        self.setAcceptDrops(True)
        self.prefs = prefs
        self.locked = frozenset(locked)
        self.choices: Choices = prefs.choices(base, self.locked)
        self.engine: Engine | None = None
        self.api = None  # core.api.ApiServer while the HTTP API runs
        self.history: History[Query] = History()
        self.settings_dialog: SettingsDialog | None = None
        self.duplicates_dialog: DuplicatesDialog | None = None
        self.report_dialog: ReportDialog | None = None
        self.error_box: QMessageBox | None = None
        self._extractors = [extractor] if extractor is not None else []
        self._preload_model = preload_model
        self._serve_api = serve_api
        self._identity = None  # of the last opened engine: results of another model must not be refined
        self._opening = True  # from now until the first Engine is open (or failed): queries wait for it
        self._waiting_source: Source | None = None  # dropped before the index was open
        self._model_loading = False
        self._model_warm = False  # the current engine's model is built and traced (see warm_up)
        self._search_seq = 0  # only the newest search's results are shown
        self._source_seq = 0  # only the newest dropped/pasted query is searched
        self._cancel: threading.Event | None = None  # set while indexing
        self._pending_choices: Choices | None = None  # applied once indexing has stopped
        self._info_pending = False
        self._info_time = 0.0
        self._retry: Callable[[], None] | None = None
        self._closed = False
        self.image_count: int | None = None

        # Both below the GUI thread's priority: drawing and input come first on a machine kept busy by VGG16.
        self.searcher = Worker("search", self, nice=WORKER_NICE)
        self.indexer = Worker("index", self, nice=WORKER_NICE)
        for worker in (self.searcher, self.indexer):
            worker.failed_unhandled.connect(self._handle_error)
        dpr = self.devicePixelRatioF()
        self.loader = ThumbnailLoader(round(THUMB * dpr), thumbnail_dir, self)
        self.model = ResultsModel(self.loader, dpr, self)
        self.index_progressed.connect(self._index_progress)

        self._build_widgets()
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_status_bar()
        self._update_actions()
        geometry, state = prefs.geometry()
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1280, 800)
        if state is not None:
            self.restoreState(state)
        QTimer.singleShot(0, self._open_engine)  # once the window is up: opening a server index may take seconds

    # == building ===================================================================================
    def _build_widgets(self) -> None:
        self.pane = QueryPane()
        self.pane.source_chosen.connect(self.open_source)
        self.view = ResultsView(self.model)
        self.view.setObjectName("results")
        self.view.refine_requested.connect(lambda hit: self.refine(hit.record, hit))
        self.view.set_placeholder(HINT_EMPTY)

        self.back_button = QToolButton()
        self.forward_button = QToolButton()
        self.breadcrumb = Breadcrumb()
        self.breadcrumb.jumped.connect(self.go_to)
        self.result_count = QLabel()
        self.result_count.setObjectName("resultCount")

        self.controls = SearchControls(self.prefs.result_count)
        self.controls.changed.connect(self._search)

        trail = QHBoxLayout()
        trail.addWidget(self.back_button)
        trail.addWidget(self.forward_button)
        trail.addWidget(self.breadcrumb, 1)
        trail.addWidget(self.result_count)
        header = QWidget()
        header.setObjectName("resultsHeader")
        header_layout = QVBoxLayout(header)
        header_layout.setContentsMargins(10, 6, 10, 2)
        header_layout.setSpacing(4)
        header_layout.addLayout(trail)
        header_layout.addWidget(self.controls)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.setSpacing(0)
        right_layout.addWidget(header)
        right_layout.addWidget(self.view, 1)

        self.splitter = QSplitter()
        self.splitter.addWidget(self.pane)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([300, 980])
        self.splitter.setChildrenCollapsible(False)
        self.setCentralWidget(self.splitter)

    def _action(self, text: str, slot: Callable[[], object], shortcut: str | None = None,
                icon_name: str | None = None, tip: str | None = None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if icon_name:
            action.setIcon(icon(icon_name))
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)  # shortcuts work while the menu bar is hidden too
        return action

    def _build_actions(self) -> None:
        self.act_open = self._action("&Open Image…", self.pane.open_file, "Ctrl+O", "open", "Search with an image file")
        self.act_paste = self._action("&Paste Image", self.pane.paste, "Ctrl+V", "paste",
                                      "Search with the image, file or URL on the clipboard")
        self.act_index = self._action("&Index Folder…", self.index_folder, "Ctrl+I", "index",
                                      "Add a folder of images to the index")
        self.act_rescan = self._action("&Re-scan All", self.rescan, "F5", "rescan",
                                       "Bring every indexed folder up to date (new, changed, deleted files)")
        self.act_remove = self._action("Remo&ve Folder…", self.remove_folder, None, "remove",
                                       "Forget the images under a folder (the files stay on disk)")
        self.act_settings = self._action("&Settings…", self.open_settings, "Ctrl+,", "settings")
        self.act_settings.setMenuRole(QAction.MenuRole.PreferencesRole)
        self.act_quit = self._action("&Quit", self.close, "Ctrl+Q")
        self.act_quit.setMenuRole(QAction.MenuRole.QuitRole)
        self.act_back = self._action("&Back", self.go_back, "Alt+Left", "back", "Previous query (Alt+Left)")
        self.act_forward = self._action("&Forward", self.go_forward, "Alt+Right", "forward", "Next query (Alt+Right)")
        self.act_similar = self._action("Find &Similar", self._refine_selected, None, "similar",
                                        "Search with the selected result (Enter, or double-click it)")
        self.act_duplicates = self._action("Find &Duplicates…", self.find_duplicates, None, "duplicates",
                                           "Groups of near-identical images in the index")
        self.act_web = self._action("Open &Web Page", self._open_web_page, None, None,
                                    "The search page the built-in HTTP API serves")
        self.act_about = self._action("&About", self._about)
        self.back_button.setDefaultAction(self.act_back)
        self.forward_button.setDefaultAction(self.act_forward)
        for button in (self.back_button, self.forward_button):
            button.setAutoRaise(True)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions([self.act_open, self.act_paste])
        file_menu.addSeparator()
        file_menu.addActions([self.act_index, self.act_rescan, self.act_remove])
        file_menu.addSeparator()
        file_menu.addAction(self.act_settings)
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)
        go_menu = bar.addMenu("&Go")
        go_menu.addActions([self.act_back, self.act_forward, self.act_similar])
        tools_menu = bar.addMenu("&Tools")
        tools_menu.addActions([self.act_duplicates, self.act_web])
        bar.addMenu("&Help").addAction(self.act_about)

    def _build_toolbar(self) -> None:
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addActions([self.act_open, self.act_paste])
        toolbar.addSeparator()
        toolbar.addActions([self.act_index, self.act_rescan])
        toolbar.addSeparator()
        toolbar.addActions([self.act_duplicates, self.act_settings])

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.status_error = QLabel()
        self.status_error.setObjectName("statusError")
        self.status_error.setWordWrap(False)
        self.retry_button = QPushButton("Retry")
        self.retry_button.clicked.connect(self._do_retry)
        bar.addWidget(self.status_error, 1)
        bar.addWidget(self.retry_button)
        self.status_error.hide()
        self.retry_button.hide()
        self.index_status = IndexStatus()
        self.index_status.cancel_requested.connect(self.cancel_index)
        self.status_index = QLabel("Opening index…")
        self.status_model = QLabel("VGG16: not loaded")
        self.status_api = QLabel()
        self.status_api.setOpenExternalLinks(True)
        for widget in (self.index_status, self.status_index, self.status_model, self.status_api):
            bar.addPermanentWidget(widget)

    # == the engine =================================================================================
    def _open_engine(self) -> None:
        """(Re)create the Engine in the search worker, closing the old one (and its API server) there first."""
        if self._closed:
            return
        old, api = self.engine, self.api
        self.engine, self.api = None, None
        self._opening = True
        self._model_loading = self._model_warm = False
        self._clear_error()
        self.status_index.setText("Opening index…")
        self.status_api.setText("")
        self._update_actions()
        choices, extractors = self.choices, list(self._extractors)

        def job() -> Engine:
            if api is not None:
                api.stop()
            if old is not None:
                if old.model_loaded:
                    extractors.insert(0, old.extractor())  # already built: returns at once
                old.close()
            return open_engine(choices.settings, choices.new_descriptor, extractors)

        self.searcher.call(job, done=self._engine_opened, failed=self._engine_failed)

    def _engine_opened(self, engine: Engine) -> None:
        if self._closed:
            engine.close()
            return
        self._opening = False
        if self._identity is not None and engine.identity != self._identity:
            # Another model: stored query vectors and refinements would compare apples with pears.
            self.history.clear()
            self.model.set_hits([])
            self.pane.clear()
            self._update_trail()
        self.engine, self._identity = engine, engine.identity
        # open_engine reused any built model of this identity; others are dropped (VGG16 holds ~0.5 GB).
        self._extractors = [engine.extractor()] if engine.model_loaded else []
        self._show_model_state()
        self._update_actions()
        self._refresh_info()
        if self._preload_model:
            self.ensure_model()
        self._start_api()
        self.engine_ready.emit()
        if self._waiting_source is not None:
            source, self._waiting_source = self._waiting_source, None
            self.open_source(source)
        elif self.history.current is not None:
            self._search()

    def _engine_failed(self, exc: Exception) -> None:
        self._opening = False
        self.status_index.setText("No index")
        self._update_actions()
        if self._waiting_source is not None:
            self._waiting_source = None
            self._no_index()
        self._handle_error(exc, retry=self._open_engine)
        self.engine_failed.emit(str(exc))

    @property
    def model_ready(self) -> bool:
        """The current engine's VGG16 is built and warmed up: a search now costs only the image."""
        return self._model_warm

    def ensure_model(self) -> None:
        """Build and warm up VGG16 in the search worker unless done already; jobs queued after it wait for it."""
        engine = self.engine
        if engine is None or self._model_loading or self._model_warm:
            return
        self._model_loading = True
        self._show_model_state()
        self.searcher.call(lambda: warm_up(engine), done=lambda extractor: self._model_done(engine, extractor),
                           failed=lambda exc: self._model_done(engine, None, exc))

    def _model_done(self, engine: Engine, extractor: Extractor | None, exc: Exception | None = None) -> None:
        if engine is not self.engine:
            return
        self._model_loading = False
        if extractor is not None:
            self._extractors = [extractor]
            self._model_warm = True
        self._show_model_state(failed=exc is not None)
        if exc is not None:
            self._handle_error(exc)

    def _show_model_state(self, failed: bool = False) -> None:
        engine = self.engine
        if engine is None:
            self.status_model.setText("VGG16: not loaded")
            return
        identity = engine.identity
        name = f"VGG16 {identity.descriptor} · {identity.weights} weights"
        if self._model_loading:
            self.status_model.setText("Loading VGG16…")
        elif engine.model_loaded:
            self.status_model.setText(name)
        else:
            self.status_model.setText("VGG16: could not load" if failed else "VGG16: not loaded")
        self.status_model.setToolTip(f"{identity.label()}\nweights: {engine.settings.weights}")

    def _refresh_info(self) -> None:
        """Backend and image count for the status bar, read in the search worker (a server may be slow)."""
        engine = self.engine
        if engine is None or self._info_pending:
            return
        self._info_pending = True
        self._info_time = time.monotonic()

        def shown(info: dict) -> None:
            self._info_pending = False
            if engine is self.engine:
                self._show_info(info)

        def failed(exc: Exception) -> None:
            self._info_pending = False
            if engine is self.engine:
                self._handle_error(exc, retry=self._refresh_info)

        self.searcher.call(engine.info, done=shown, failed=failed)

    def _show_info(self, info: dict) -> None:
        backend = "Embedded index" if info["backend"] == "embedded" else "Elasticsearch"
        self.status_index.setText(f"{backend} · {info['count']:,} images")
        self.status_index.setToolTip(info["location"])
        self.image_count = info["count"]
        if self.model.rowCount() == 0 and self.history.current is None:
            self.view.set_placeholder(HINT_NO_INDEX if info["count"] == 0 else HINT_EMPTY)

    # == the HTTP API ===============================================================================
    def _start_api(self) -> None:
        engine, settings = self.engine, self.choices.settings
        if not (self._serve_api and self.choices.api_enabled) or engine is None:
            self.status_api.setText("API off")
            return
        self.status_api.setText("API starting…")

        def job():
            from core.api import ApiServer  # imports Flask: kept out of the window's startup

            server = ApiServer(engine, settings)
            server.start()
            return server

        self.searcher.call(job, done=lambda server: self._api_started(engine, server), failed=self._api_failed)

    def _api_started(self, engine: Engine, server) -> None:
        if engine is not self.engine or self._closed:  # the engine was replaced meanwhile
            self.searcher.call(server.stop)
            return
        self.api = server
        self.status_api.setText(f'API: <a href="{server.url}">{server.url}</a>')
        self._update_actions()

    def _api_failed(self, exc: Exception) -> None:
        reason = "not available in this build" if isinstance(exc, ImportError) else str(exc)
        self.status_api.setText("API off")
        self.status_api.setToolTip(f"The HTTP API could not start: {reason}")
        self.statusBar().showMessage(f"The HTTP API could not start: {reason}", 10000)

    def _restart_api(self) -> None:
        api, self.api = self.api, None
        if api is not None:
            self.searcher.call(api.stop)
        self._start_api()

    def _open_web_page(self) -> None:
        if self.api is not None:
            QDesktopServices.openUrl(QUrl(self.api.url))

    # == queries ====================================================================================
    def open_source(self, source: Source) -> None:
        """A new query from outside (file, URL, image data): read and preview it, embed it, search."""
        self._source_seq += 1
        seq = self._source_seq
        self.pane.show_loading(source.label)
        engine = self.engine
        if engine is None:
            if self._opening:
                self._waiting_source = source  # searched as soon as the index is open
            else:
                self._no_index()
            return
        limit = int(engine.settings.max_upload_mb * 2**20)
        self.searcher.call(lambda: load_source(source, limit), done=lambda loaded: self._source_loaded(seq, loaded),
                           failed=lambda exc: self._query_failed(seq, source.label, exc))

    def _no_index(self) -> None:
        self.pane.show_error("No index is open, so there is nothing to search.")
        self.query_failed.emit("no index is open")

    def _source_loaded(self, seq: int, loaded: LoadedSource) -> None:
        engine = self.engine
        if seq != self._source_seq or engine is None:
            return
        self.pane.show_query(Query(loaded.label, loaded.preview, path=loaded.path, details=loaded.details))
        self.ensure_model()
        self.statusBar().showMessage("Searching…")
        self.searcher.call(lambda: engine.embed(loaded.data), done=lambda vector: self._embedded(seq, loaded, vector),
                           failed=lambda exc: self._query_failed(seq, loaded.label, exc))

    def _embedded(self, seq: int, loaded: LoadedSource, vector) -> None:
        if seq == self._source_seq:
            self.push(Query(loaded.label, loaded.preview, vector=vector, path=loaded.path, details=loaded.details))

    def _query_failed(self, seq: int, label: str, exc: Exception) -> None:
        if seq != self._source_seq:
            return
        self.statusBar().clearMessage()
        if isinstance(exc, ImageError):
            self.pane.show_error(f"{label}: {exc.reason}")
        else:
            self.pane.show_error(f"{label}: the search failed.")
            self._handle_error(exc)
        self.query_failed.emit(str(exc))

    def refine(self, record: ImageRecord, hit: Hit | None = None) -> None:
        """Search from an indexed image by its stored vector (double-click, Enter, Find Similar)."""
        self._source_seq += 1  # supersedes a dropped query still loading
        thumbnail = self.model.thumbnail(hit) if hit is not None else None
        query = record_query(record, thumbnail.toImage() if thumbnail is not None else None)
        self.push(query)
        path = record.path

        def sharper(image: QImage) -> None:  # the grid's thumbnail first, a larger preview when decoded
            if query in self.history.items:
                better = replace(query, preview=image)
                self.history.items[self.history.items.index(query)] = better
                if self.history.current is better:
                    self.pane.show_query(better)

        # A file that went away since indexing keeps the grid's thumbnail; the search itself uses the stored vector.
        self.searcher.call(lambda: decode_thumbnail(path, PREVIEW_SIZE), done=sharper, failed=lambda _exc: None)

    def _refine_selected(self) -> None:
        hits = self.view.selected_hits()
        if hits:
            self.refine(hits[0].record, hits[0])

    def push(self, query: Query) -> None:
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
        self.history.go(index)
        self._show_current()

    def _show_current(self) -> None:
        query = self.history.current
        if query is not None:
            self.pane.show_query(query)
            self.setWindowTitle(f"{query.label} — Image Search")
        self._update_trail()
        self._search()

    def _update_trail(self) -> None:
        self.breadcrumb.set_trail([q.label for q in self.history.items], self.history.index)
        self.act_back.setEnabled(self.history.can_back())
        self.act_forward.setEnabled(self.history.can_forward())

    def _search(self) -> None:
        """Run the current query with the current k and filters; a stored vector makes this milliseconds."""
        self.controls.settle()
        query, engine = self.history.current, self.engine
        if query is None or engine is None:
            return
        self._search_seq += 1
        seq, k, filters = self._search_seq, self.controls.k.value(), self.controls.search_filter()
        started = time.perf_counter()

        def job() -> list[Hit]:
            if query.ref_id is not None:
                return engine.similar(query.ref_id, k, filters)
            return engine.search_vector(query.vector, k, filters)

        self.searcher.call(job, done=lambda hits: self._show_hits(seq, hits, started),
                           failed=lambda exc: self._search_failed(seq, exc))

    def _show_hits(self, seq: int, hits: list[Hit], started: float) -> None:
        if seq != self._search_seq:
            return
        self.model.set_hits(hits)
        self.view.scrollToTop()
        self.view.set_placeholder(HINT_NO_RESULTS)
        self.result_count.setText(f"{len(hits)} results · {1000 * (time.perf_counter() - started):.0f} ms")
        self.statusBar().clearMessage()
        self._clear_error()
        self.results_shown.emit(len(hits))

    def _search_failed(self, seq: int, exc: Exception) -> None:
        if seq == self._search_seq:
            self.statusBar().clearMessage()
            self._handle_error(exc, retry=self._search)

    # == indexing ===================================================================================
    @property
    def indexing(self) -> bool:
        return self._cancel is not None

    def index_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Index a folder of images", str(Path.home()))
        if folder:
            self.prefs.add_root(folder)
            self.start_index([folder])

    def rescan(self) -> None:
        roots = self.prefs.roots
        if roots:
            self.start_index(roots)
        else:
            self.statusBar().showMessage("No folders indexed yet: File → Index Folder… (Ctrl+I)", 8000)

    def start_index(self, roots: list[str]) -> None:
        engine = self.engine
        if engine is None or self.indexing:
            self.statusBar().showMessage("Indexing is already running." if self.indexing else "No index is open.", 5000)
            return
        self.ensure_model()  # shows "Loading VGG16…"; the indexing thread waits for the same model
        cancel = threading.Event()
        self._cancel = cancel
        self.index_status.start(", ".join(os.path.basename(r.rstrip("/\\")) or r for r in roots))
        self._update_actions()
        last = [0.0]

        def progress(p: IndexProgress) -> None:  # runs in the indexing thread
            now = time.monotonic()
            if p.done >= p.total or now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                self.index_progressed.emit(p)

        self.indexer.call(lambda: engine.index(roots, progress, cancel), done=self._index_done,
                          failed=lambda exc: self._index_failed(roots, exc))

    def cancel_index(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def _index_progress(self, progress: IndexProgress) -> None:
        if not self.indexing:
            return
        self.index_status.update_progress(progress)
        if time.monotonic() - self._info_time >= COUNT_EVERY_S:
            self._refresh_info()

    def _index_done(self, report: IndexReport) -> None:
        self._index_stopped()
        self.statusBar().showMessage(f"Indexing: {report.summary()}", 20000)
        self._refresh_info()
        if report.skipped and not self._closed:
            if self.report_dialog is not None:
                self.report_dialog.close()
            self.report_dialog = ReportDialog(report, self)
            self.report_dialog.show()
        self.index_finished.emit(report)
        if self._pending_choices is None and (report.indexed or report.removed) and self.history.current:
            self._search()  # new images may belong in the results
        self._apply_pending()

    def _index_failed(self, roots: list[str], exc: Exception) -> None:
        self._index_stopped()
        self._handle_error(exc, retry=lambda: self.start_index(roots))
        self._apply_pending()

    def _index_stopped(self) -> None:
        self._cancel = None
        self.index_status.finish()
        self._update_actions()

    def remove_folder(self) -> None:
        engine, roots = self.engine, self.prefs.roots
        if engine is None:
            return
        if roots:
            folder, ok = QInputDialog.getItem(self, "Remove Folder",
                                              "Forget the images under this folder (the files stay on disk):",
                                              roots, 0, False)
        else:
            folder = QFileDialog.getExistingDirectory(self, "Forget the images under a folder", str(Path.home()))
            ok = bool(folder)
        if not ok or not folder:
            return

        def removed(count: int) -> None:
            self.prefs.remove_root(folder)
            self.statusBar().showMessage(f"{count} images under {folder} removed from the index", 10000)
            self._refresh_info()
            if self.history.current is not None:
                self._search()

        # In the indexing worker: it is index I/O, and it must not overlap a run on the same folder.
        self.indexer.call(lambda: engine.remove_folder(folder), done=removed,
                          failed=lambda exc: self._handle_error(exc))

    # == dialogs ====================================================================================
    def open_settings(self) -> None:
        dialog = SettingsDialog(self.choices, self.locked, self.searcher, self)
        dialog.accepted.connect(lambda: self.apply_choices(dialog.choices()))
        self.settings_dialog = dialog
        dialog.open()  # window-modal without a nested event loop: the workers' results keep arriving

    def apply_choices(self, choices: Choices) -> None:
        """Save the dialog's choices; a new Engine if the index or model changed, else maybe a new API server."""
        self.prefs.save_choices(choices, self.locked)
        old, self.choices = self.choices, choices
        if choices.engine_changed(old) or (self.engine is None and not self._opening):
            if self.indexing:
                self._pending_choices = choices
                self.cancel_index()
                self.statusBar().showMessage("Stopping indexing to apply the new settings…")
            else:
                self._open_engine()
        elif choices.api_changed(old):
            self._restart_api()

    def _apply_pending(self) -> None:
        if self._pending_choices is not None and not self._closed:
            self._pending_choices = None
            self._open_engine()

    def find_duplicates(self) -> None:
        if self.engine is None:
            return
        if self.duplicates_dialog is not None:
            self.duplicates_dialog.close()
        dialog = DuplicatesDialog(self.engine, self.searcher, self.loader, self)
        dialog.find_similar.connect(self.refine)
        self.duplicates_dialog = dialog
        dialog.show()
        dialog.find()

    def _about(self) -> None:
        QMessageBox.about(self, "About Image Search", about_text())

    # == errors =====================================================================================
    def _handle_error(self, exc: Exception, retry: Callable[[], None] | None = None) -> None:
        """Settings the user must fix get a dialog saying how; an index that is away gets the status bar and
        a Retry; anything unexpected a dialog too (never swallowed)."""
        if isinstance(exc, StoreError) and not isinstance(exc, IdentityMismatch):
            self._show_store_error(str(exc), retry)
        elif isinstance(exc, ImageError):
            self.pane.show_error(exc.reason)
        else:
            self._explain(exc)

    def _show_store_error(self, text: str, retry: Callable[[], None] | None) -> None:
        self.status_error.setText(f"Index unavailable: {text}")
        self.status_error.setToolTip(text)
        self.status_error.show()
        self._retry = retry
        self.retry_button.setVisible(retry is not None)

    def _clear_error(self) -> None:
        self.status_error.hide()
        self.retry_button.hide()
        self._retry = None

    def _do_retry(self) -> None:
        retry = self._retry
        self._clear_error()
        if retry is not None:
            retry()

    def _explain(self, exc: Exception) -> None:
        if self.error_box is not None:
            self.error_box.close()
        self.error_box = fix_dialog(self, exc, self.open_settings, self._choose_weights)
        self.error_box.open()  # does not block: the window keeps drawing and the workers keep reporting

    def _choose_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "VGG16 weights", str(keras_cache_dir()),
                                              "Keras weights (*.h5 *.keras);;All files (*)")
        if path:
            self.apply_choices(replace(self.choices, settings=self.choices.settings.replace(weights=path)))

    # == window =====================================================================================
    def _update_actions(self) -> None:
        has_engine = self.engine is not None
        for action in (self.act_index, self.act_rescan, self.act_remove, self.act_duplicates):
            action.setEnabled(has_engine and not self.indexing)
        self.act_web.setEnabled(self.api is not None)

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
            self._refresh_info()  # another process (the CLI) may have indexed meanwhile

    def closeEvent(self, event: QCloseEvent) -> None:
        self.prefs.save_geometry(self.saveGeometry(), self.saveState())
        self.prefs.result_count = self.controls.k.value()
        self.cancel_index()
        self.hide()  # the wait below (at most one indexing batch) happens with no frozen window on screen
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop the API server, let the workers finish their current call, close the index."""
        if self._closed:
            return
        self._closed = True
        self.controls.settle()
        if self.api is not None:
            self.api.stop()
        self.indexer.stop()
        self.searcher.stop()
        self.loader.shutdown()
        for dialog in (self.settings_dialog, self.duplicates_dialog, self.report_dialog, self.error_box):
            if dialog is not None:
                dialog.close()
        if self.engine is not None:
            self.engine.close()
            self.engine = None
