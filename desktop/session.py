"""The session controller: opening the engine (again when settings change), VGG16, the count, the API server.

States: OPENING -> OPEN or FAILED; a settings change that names another index or model goes through
OPENING again. Reopening happens in the search worker in one step (stop the API server, shut the old
engine's job queue down, close the old engine, open the new one), so nothing uses a half-closed engine.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Signal

from core.engine import Engine
from core.model import Extractor
from desktop.indexing import JobsController
from desktop.preferences import Choices
from desktop.worker import Worker, open_engine, warm_up

OPENING, OPEN, FAILED, CLOSED = "opening", "open", "failed", "closed"
QUEUE_STOP_S = 30.0  # the running job stops at its next batch boundary: seconds on a slow machine


class Session(QObject):
    opening = Signal()
    opened = Signal(object)  # Engine
    failed = Signal(object)  # the exception that kept the index from opening
    model_changed = Signal()  # loading, loaded or failed: see model_text()
    model_failed = Signal(object)
    info_changed = Signal(dict)  # Engine.info()
    info_failed = Signal(object)
    api_changed = Signal()  # see api_text()

    def __init__(self, choices: Choices, worker: Worker, jobs: JobsController, *, extractor: Extractor | None,
                 preload_model: bool, serve_api: bool, parent: QObject | None = None):
        super().__init__(parent)
        self.choices = choices
        self.worker = worker
        self.jobs = jobs
        self.state = OPENING
        self.engine: Engine | None = None
        self.api = None  # core.server.ApiServer while the HTTP API runs
        self.api_error: str | None = None
        self.model_loading = self.model_warm = self.model_broken = False
        self.info_time = 0.0
        self._info_pending = False
        self._extractors = [extractor] if extractor is not None else []
        self._preload_model = preload_model
        self._serve_api = serve_api

    # -- the engine -------------------------------------------------------------------------------
    def open(self) -> None:
        """(Re)create the Engine in the search worker, after stopping the old one's API server and jobs."""
        if self.state == CLOSED:
            return
        old, api, queue = self.engine, self.api, self.jobs.detach()
        self.engine, self.api, self.state = None, None, OPENING
        self.model_loading = self.model_warm = self.model_broken = False
        self.opening.emit()
        self.api_changed.emit()
        choices, extractors = self.choices, list(self._extractors)

        def job() -> Engine:
            if api is not None:
                api.stop()
            if queue is not None:
                queue.shutdown(QUEUE_STOP_S)
            if old is not None:
                if old.model_loaded:
                    extractors.insert(0, old.extractor())  # already built: returns at once
                old.close()
            return open_engine(choices.settings, choices.new_descriptor, extractors)

        self.worker.call(job, done=self._opened, failed=self._failed)

    def apply(self, choices: Choices) -> None:
        """New settings: reopen the engine if the index or model changed, else maybe restart the API server."""
        old, self.choices = self.choices, choices
        if choices.engine_changed(old) or self.state == FAILED:
            self.open()
        elif choices.api_changed(old):
            self.restart_api()

    def _opened(self, engine: Engine) -> None:
        if self.state == CLOSED:
            engine.close()
            return
        self.engine, self.state = engine, OPEN
        # open_engine reused any built model of this identity; others are dropped (VGG16 holds ~0.5 GB).
        self._extractors = [engine.extractor()] if engine.model_loaded else []
        self.jobs.attach(engine)
        self.model_changed.emit()
        self.refresh_info()
        if self._preload_model:
            self.ensure_model()
        self.start_api()
        self.opened.emit(engine)

    def _failed(self, exc: Exception) -> None:
        if self.state != CLOSED:
            self.state = FAILED
            self.model_changed.emit()
            self.failed.emit(exc)

    # -- the model --------------------------------------------------------------------------------
    def ensure_model(self) -> None:
        """Build and warm up VGG16 in the search worker unless done; calls queued after it wait for it."""
        engine = self.engine
        if engine is None or self.model_loading or self.model_warm:
            return
        self.model_loading = True
        self.model_changed.emit()
        self.worker.call(lambda: warm_up(engine), done=lambda extractor: self._model_done(engine, extractor),
                         failed=lambda exc: self._model_done(engine, None, exc))

    def _model_done(self, engine: Engine, extractor: Extractor | None, exc: Exception | None = None) -> None:
        if engine is not self.engine:
            return
        self.model_loading = False
        self.model_warm = extractor is not None
        self.model_broken = exc is not None
        if extractor is not None:
            self._extractors = [extractor]
        self.model_changed.emit()
        if exc is not None:
            self.model_failed.emit(exc)

    def model_text(self) -> tuple[str, str]:
        """The status bar's words for the model, and a tooltip with the details (identity, weights)."""
        engine = self.engine
        if engine is None:
            return "", ""
        text = ("Loading the model…" if self.model_loading else "Model ready" if engine.model_loaded
                else "Model could not load" if self.model_broken else "Model not loaded")
        return text, f"VGG16 {engine.identity.label()}\nweights: {engine.settings.weights}"

    # -- the count --------------------------------------------------------------------------------
    def refresh_info(self) -> None:
        """Backend and image count, read in the search worker (a server may be slow)."""
        engine = self.engine
        if engine is None or self._info_pending:
            return
        self._info_pending = True
        self.info_time = time.monotonic()

        def shown(info: dict) -> None:
            self._info_pending = False
            if engine is self.engine:
                self.info_changed.emit(info)

        def failed(exc: Exception) -> None:
            self._info_pending = False
            if engine is self.engine:
                self.info_failed.emit(exc)

        self.worker.call(engine.info, done=shown, failed=failed)

    # -- the HTTP API -----------------------------------------------------------------------------
    def start_api(self) -> None:
        engine, settings = self.engine, self.choices.settings
        self.api_error = None
        if not (self._serve_api and self.choices.api_enabled) or engine is None:
            self.api_changed.emit()
            return

        def job():
            from core.server import ApiServer  # imports Flask: kept out of the window's startup

            server = ApiServer(engine, settings)
            server.start()
            return server

        self.worker.call(job, done=lambda server: self._api_started(engine, server), failed=self._api_failed)

    def _api_started(self, engine: Engine, server) -> None:
        if engine is not self.engine or self.state == CLOSED:  # the engine was replaced meanwhile
            self.worker.call(server.stop)
            return
        self.api = server
        self.api_changed.emit()

    def _api_failed(self, exc: Exception) -> None:
        self.api_error = "not available in this build" if isinstance(exc, ImportError) else str(exc)
        self.api_changed.emit()

    def restart_api(self) -> None:
        api, self.api = self.api, None
        if api is not None:
            self.worker.call(api.stop)
        self.start_api()

    def shutdown(self) -> None:
        """Stop the API server and the jobs (the running one at its next batch), close the index."""
        if self.state == CLOSED:
            return
        self.state = CLOSED
        if self.api is not None:
            self.api.stop()
        queue = self.jobs.detach()
        if queue is not None:
            queue.shutdown(QUEUE_STOP_S)
        self.worker.stop()
        if self.engine is not None:
            self.engine.close()
            self.engine = None
