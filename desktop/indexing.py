"""The jobs controller: the window's view of the engine's one job queue (core.jobs).

Indexing, removing folders, finding duplicates and labelling images are submitted to `queue_for(engine)`, the
same queue the HTTP API and the CLI use, so a job submitted by another front end shows here too, with Cancel.
The queue's observer runs in its worker thread; every snapshot is passed to the GUI thread through a queued signal.
States: IDLE (no job) -> BUSY (a job runs or waits) -> IDLE, with the last outcome left on screen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from core.jobs import FINISHED, JobQueue, queue_for
from desktop.index_widgets import JobStatus, ReportDialog, outcome, plural
from desktop.worker import WORKER_NICE, lower_priority

PROGRESS_EVERY_S = 0.05  # at most 20 progress updates a second reach the GUI thread

_thread = threading.local()
Done = Callable[[object], None]
Failed = Callable[[str], None]


class JobsController(QObject):
    progressed = Signal(dict)  # a running job's snapshot once it has a total, in the GUI thread
    finished = Signal(dict)  # a finished job's snapshot (done, failed or cancelled)
    busy_changed = Signal(bool)
    _arrived = Signal(dict)  # emitted in the queue's thread, delivered in the GUI thread

    def __init__(self, status: JobStatus, parent: QWidget):
        super().__init__(parent)
        self.status = status
        self.queue: JobQueue | None = None
        self.report_dialog: ReportDialog | None = None
        self._window = parent
        self._unsubscribe: Callable[[], None] | None = None
        self._active: dict[str, dict] = {}  # job id -> latest snapshot, for jobs not finished
        self._callbacks: dict[str, tuple[Done | None, Failed | None]] = {}
        self._shown_skipped: set[str] = set()  # paths already reported: a re-scan shows only what is new
        self._last_skipped: list[tuple[str, str]] = []
        self._last_summary = ""
        self._last_emit = 0.0
        # Direct when emitted in the GUI thread (a submit), queued from the queue's worker thread.
        self._arrived.connect(self._on_snapshot)
        status.cancel_requested.connect(self.cancel)
        status.details_requested.connect(self.show_details)

    # -- the queue --------------------------------------------------------------------------------
    def attach(self, engine) -> None:
        """Follow `engine`'s queue; a job another front end is running on it shows at once."""
        self.detach()
        self.queue = queue_for(engine)
        self._unsubscribe = self.queue.subscribe(self._observe)
        for job in reversed(self.queue.all()):
            if job["state"] not in FINISHED:
                self._on_snapshot(job)

    def detach(self) -> JobQueue | None:
        """Stop following the queue; returns it (the caller shuts it down before closing its engine)."""
        queue, self.queue = self.queue, None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        callbacks, self._callbacks = self._callbacks, {}
        for _done, failed in callbacks.values():
            if failed is not None:
                failed("the index was closed")
        if self._active:  # their last word will not arrive: the queue is being shut down
            self._active.clear()
            self.status.hide()
            self.busy_changed.emit(False)
        return queue

    def _observe(self, job: dict) -> None:  # in the queue's thread: pass on state changes, thin out progress
        if job["state"] == "running" and not getattr(_thread, "lowered", False):
            # The queue's thread (and the decoders it starts) yield to the GUI thread, as the search worker does.
            lower_priority(WORKER_NICE)
            _thread.lowered = True
        now = time.monotonic()
        if job["state"] == "running" and job["done"] < job["total"] and now - self._last_emit < PROGRESS_EVERY_S:
            return
        self._last_emit = now
        self._arrived.emit(job)

    @property
    def busy(self) -> bool:
        return bool(self._active)

    # -- submitting -------------------------------------------------------------------------------
    def index(self, roots: list[str], prune_missing: bool = False, done: Done | None = None) -> None:
        """Index `roots`; `done` gets the run's core.indexer.IndexReport when it finishes (not if cancelled)."""
        if self.queue is not None:
            job = self.queue.submit_index(roots, prune_missing=prune_missing)
            if done is not None:
                self._callbacks[job.id] = (done, None)

    def remove(self, folders: list[str], done: Done | None = None) -> None:
        if self.queue is not None:
            job = self.queue.submit_remove(folders)
            self._callbacks[job.id] = (done, None)

    def duplicates(self, threshold: float, done: Done, failed: Failed) -> None:
        if self.queue is None:
            failed("No index is open.")
            return
        job = self.queue.submit_duplicates(threshold)
        self._callbacks[job.id] = (done, failed)

    def label_images(self) -> None:
        """Label the images indexed before the labels setting was on (core/labels.py); with the setting off
        the job fails and the status bar says how to turn it on."""
        if self.queue is not None:
            self.queue.submit_labels()

    def cancel(self) -> None:
        """Cancel the job on screen (the running one, whoever submitted it)."""
        if self.queue is not None and (job := self.queue.active()) is not None:
            self.queue.cancel(job["job_id"])

    # -- what arrives -----------------------------------------------------------------------------
    def _on_snapshot(self, job: dict) -> None:
        was_busy, job_id = self.busy, job["job_id"]
        if job["state"] in FINISHED:
            self._active.pop(job_id, None)
            self._finished(job)
        else:
            previous = self._active.get(job_id)
            started = job["state"] == "running" and (previous is None or previous["state"] != "running")
            if started or (previous is None and not self._active):
                self.status.start(job)
            self._active[job_id] = job
            self.status.update_progress(job)
            if job["state"] == "running" and job["total"]:  # counted work, once the scan knows how much
                self.progressed.emit(job)
        if self.busy != was_busy:
            self.busy_changed.emit(self.busy)

    def _finished(self, job: dict) -> None:
        done, failed = self._callbacks.pop(job["job_id"], (None, None))
        ok = job["state"] == "done"
        result = self.queue.result(job["job_id"]) if ok and self.queue is not None else None
        if job["kind"] == "duplicates":  # said in its own window, not in the status bar
            if self._active:
                self.status.start(next(iter(self._active.values())))
            else:
                self.status.hide()
            if ok and done is not None:
                done(result)
            elif failed is not None:
                failed(job["error"] or "cancelled")
            self.finished.emit(job)
            return
        skipped = [(e["path"], e["reason"]) for e in job["errors"]]
        self._last_skipped, self._last_summary = skipped, outcome(job)
        self.status.finish(job, bool(skipped))
        new = [(p, r) for p, r in skipped if p not in self._shown_skipped]
        if new and self._window.isVisible():
            self._shown_skipped.update(p for p, _ in new)
            heading = f"{plural(len(new), 'file')} could not be indexed" + (
                f" ({len(skipped) - len(new)} more already reported: Details… in the status bar)"
                if len(new) < len(skipped) else "") + ":"
            self._show_report(new, heading)
        if ok and done is not None:
            done(result)
        self.finished.emit(job)

    def show_details(self) -> None:
        """Every file the last run skipped (the dialog after a run shows only the newly skipped ones)."""
        self._show_report(self._last_skipped, f"{plural(len(self._last_skipped), 'file')} could not be indexed:")

    def _show_report(self, rows: list[tuple[str, str]], heading: str) -> None:
        if self.report_dialog is not None:
            self.report_dialog.close()
        self.report_dialog = ReportDialog(self._last_summary, rows, heading, self._window)
        self.report_dialog.show()
