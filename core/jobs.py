"""Background indexing jobs for the HTTP API: one worker thread runs them one at a time, in order.

Jobs run one at a time because two concurrent index runs over one store would only compete for the
same CPU and the same extractor lock; a queued job waits in state "queued" and can be cancelled there.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from core.indexer import IndexProgress, IndexReport

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
KEEP_FINISHED = 100  # finished jobs remembered for polling; older ones are forgotten

IndexFunction = Callable[..., IndexReport]  # Engine.index(roots, progress=, cancel=)


@dataclass
class Job:
    id: str
    paths: list[str]
    state: str = QUEUED
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    current: str | None = None
    errors: list[dict] = field(default_factory=list)
    report: dict | None = None
    error: str | None = None  # why a failed job failed
    created: float = field(default_factory=time.time)
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def to_dict(self) -> dict:
        return {
            "job_id": self.id, "state": self.state, "paths": list(self.paths), "done": self.done,
            "total": self.total, "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "current": self.current, "errors": list(self.errors), "report": self.report, "error": self.error,
            "created": self.created, "finished": self.finished,
        }


class JobRegistry:
    """Thread-safe: request threads submit, poll and cancel; one worker thread runs the jobs."""

    def __init__(self, index: IndexFunction):
        self._index = index
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queue: deque[Job] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._worker: threading.Thread | None = None

    def submit(self, paths: list[str]) -> Job:
        job = Job(id=uuid.uuid4().hex, paths=list(paths))
        with self._lock:
            if self._closed:
                raise RuntimeError("the job registry is shut down")
            self._jobs[job.id] = job
            self._queue.append(job)
            self._forget_old()
            if self._worker is None:
                # Started on first use so that apps that never index hold no idle thread.
                self._worker = threading.Thread(target=self._run_forever, name="index-jobs", daemon=True)
                self._worker.start()
            self._wake.notify()
        return job

    def get(self, job_id: str) -> dict | None:
        """A snapshot of the job (taken under the lock, so never half-updated), or None."""
        with self._lock:
            job = self._jobs.get(job_id)
            return job.to_dict() if job is not None else None

    def all(self) -> list[dict]:
        with self._lock:
            return [job.to_dict() for job in reversed(self._jobs.values())]

    def cancel(self, job_id: str) -> dict | None:
        """Ask a job to stop. A queued job is cancelled at once; a running one stops after its current file."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            job.cancel_event.set()
            if job.state == QUEUED:
                self._queue.remove(job)
                self._finish(job, CANCELLED)
            return job.to_dict()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel everything and wait (bounded) for the running job to reach a batch boundary."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                job.cancel_event.set()
            while self._queue:
                self._finish(self._queue.popleft(), CANCELLED)
            self._wake.notify_all()
            worker = self._worker
        if worker is not None:
            worker.join(timeout)

    # -- the worker thread --------------------------------------------------------------------------
    def _run_forever(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                job = self._queue.popleft()
                job.state = RUNNING
            self._run(job)

    def _run(self, job: Job) -> None:
        def progress(p: IndexProgress) -> None:
            with self._lock:
                job.done, job.total, job.current, job.eta_s = p.done, p.total, p.path, p.eta_s

        try:
            report = self._index(job.paths, progress=progress, cancel=job.cancel_event)
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the client, not lost in a thread
            log.warning("index job %s failed: %s", job.id, exc, exc_info=not _is_user_error(exc))
            with self._lock:
                job.error = str(exc) or type(exc).__name__
                self._finish(job, FAILED)
            return
        with self._lock:
            job.errors = [{"path": path, "reason": reason} for path, reason in report.skipped]
            job.report = report.to_dict()
            job.eta_s = 0.0 if not report.cancelled else None
            self._finish(job, CANCELLED if report.cancelled else DONE)

    def _finish(self, job: Job, state: str) -> None:
        job.state = state
        job.finished = time.time()
        job.current = None

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in FINISHED]
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.id]


def _is_user_error(exc: Exception) -> bool:
    from core.model import WeightsError
    from core.store.base import StoreError

    return isinstance(exc, StoreError | WeightsError | OSError)
