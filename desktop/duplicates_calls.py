"""The duplicates window's engine calls, one at a time in their own Worker thread, with a cancel event and
progress: `progress(done, total)` may be passed to the engine as its callback (it is emitted in the worker
thread and delivered, queued, in the GUI thread)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import shiboken6
from PySide6.QtCore import QObject, Signal

from desktop.worker import WORKER_NICE, Worker


class Calls(QObject):
    busy_changed = Signal(bool)
    progress = Signal(int, int)  # (done, total): emitted in the worker thread
    failed = Signal(object)  # the exception of a call (core.duplicates.Cancelled when cancelled)

    def __init__(self, parent: QObject):
        super().__init__(parent)
        self.cancel = threading.Event()  # passed to the engine; `stop` sets it
        self.running = False  # a call is queued or running (the Worker's own set-up call is not counted)
        self._worker = Worker("duplicates", self, nice=WORKER_NICE)

    def start(self, job: Callable[[], object], done: Callable[[object], None]) -> None:
        """Run `job()` in the worker thread, then `done(result)` in the GUI thread (or emit `failed`)."""
        self.cancel.clear()
        self.running = True
        self.busy_changed.emit(True)

        def finished(result) -> None:
            if shiboken6.isValid(self):
                self._end()
                done(result)

        def failed(exc: Exception) -> None:
            if shiboken6.isValid(self):
                self._end()
                self.failed.emit(exc)

        self._worker.call(job, finished, failed)

    def stop(self) -> None:
        """Cancel the call in progress and end the thread (waits for the call to reach a cancel check)."""
        self.cancel.set()
        self._worker.stop()

    def _end(self) -> None:
        self.running = False
        self.busy_changed.emit(False)
