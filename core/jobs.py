"""The one job queue for long work on an index (index folders, remove folders, find duplicates, label images).

Every front end (CLI, HTTP API, desktop) submits long work for an Engine to `queue_for(engine)`, so there is
one queue per Engine: jobs run one at a time, in order, in one worker thread. Two runs over one store at
once would only compete for the same CPU and the same extractor lock, and a remove racing an index run on
the same folder could leave either result. A queued job waits in state "queued" and can be cancelled there;
a running one stops at its next batch boundary. Observers see every job of the queue, whoever submitted it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.duplicates import Cancelled
from core.errors import UserError
from core.indexer import IndexProgress, IndexReport
from core.labels import LabelReport

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
INDEX, REMOVE, DUPLICATES, LABELS = "index", "remove", "duplicates", "labels"
KEEP_FINISHED = 100  # finished jobs remembered for polling; older ones are forgotten

Snapshot = dict[str, Any]
Observer = Callable[[Snapshot], None]


@dataclass
class Job:
    """One unit of long work. Read its state through `JobQueue.get` (a snapshot), not from another thread."""

    id: str
    kind: str  # INDEX, REMOVE, DUPLICATES or LABELS
    paths: list[str]  # folders to index or remove; empty for duplicates
    threshold: float | None = None  # for duplicates: cosine similarity in [0, 1]
    variants: bool = False  # for duplicates: also match mirrored and rotated copies
    prune_missing: bool = False
    state: str = QUEUED
    done: int = 0  # files (index, labels) or folders (remove) handled so far
    total: int = 0
    eta_s: float | None = None  # seconds left, once the indexer can estimate it
    current: str | None = None  # the path being handled
    errors: list[dict] = field(default_factory=list)  # {"path", "reason"} of each file that was skipped
    report: dict | None = None  # JSON-ready summary once finished
    error: str | None = None  # why a failed job failed
    created: float = field(default_factory=time.time)  # Unix time, seconds
    finished: float | None = None
    result: Any = None  # the Python result: IndexReport, removed count (int) or duplicate groups
    exception: Exception | None = None  # why a failed job failed, for callers that map errors themselves (CLI)
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def to_dict(self) -> Snapshot:
        """The JSON shape the HTTP API returns for a job (and observers receive)."""
        return {
            "job_id": self.id, "kind": self.kind, "state": self.state, "paths": list(self.paths),
            "done": self.done, "total": self.total, "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "current": self.current, "errors": list(self.errors), "report": self.report, "error": self.error,
            "created": self.created, "finished": self.finished,
        }


class JobQueue:
    """Thread-safe: any thread submits, polls, cancels and subscribes; one worker thread runs the jobs.

    `engine` is anything with the Engine methods the jobs call: `index(roots, progress=, cancel=)`,
    `remove_folder(folder) -> int`, `duplicate_groups(threshold, progress=, cancel=) -> list[Group]` (with
    `variants=True` only for a job that asks for mirrored and rotated copies) and
    `label_images(progress=, cancel=) -> LabelReport`; they are looked up when a job runs, not when the queue
    is made.
    """

    def __init__(self, engine: Any):
        # Weak: the queue (kept by queue_for in a WeakKeyDictionary) must not keep its engine alive.
        self._engine_ref = weakref.ref(engine)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queue: deque[Job] = deque()
        self._observers: list[Observer] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified on every state change (wait, the worker)
        self._closed = False
        self._worker: threading.Thread | None = None

    # -- submitting -------------------------------------------------------------------------------
    def submit_index(self, paths: list[str], prune_missing: bool = False) -> Job:
        """Index (or bring up to date) the folders `paths`. `prune_missing` asks the engine to forget indexed
        files under other folders that are gone (passed on only when true, for engines that support it)."""
        return self._submit(Job(id=uuid.uuid4().hex, kind=INDEX, paths=list(paths), prune_missing=prune_missing))

    def submit_remove(self, folders: list[str]) -> Job:
        """Forget every indexed image under each folder (the files stay on disk); result: how many, an int."""
        return self._submit(Job(id=uuid.uuid4().hex, kind=REMOVE, paths=list(folders), total=len(folders)))

    def submit_duplicates(self, threshold: float, variants: bool = False) -> Job:
        """Groups of images at least `threshold` similar (cosine, 0..1), with keepers and the "not duplicates"
        decisions applied (and mirrored and rotated copies when `variants`); result: list of
        core.duplicates.Group."""
        return self._submit(Job(id=uuid.uuid4().hex, kind=DUPLICATES, paths=[], threshold=threshold,
                                variants=variants))

    def submit_labels(self) -> Job:
        """ImageNet labels for the indexed images never labelled (core/labels.py); result: a LabelReport."""
        return self._submit(Job(id=uuid.uuid4().hex, kind=LABELS, paths=[]))

    def _submit(self, job: Job) -> Job:
        with self._lock:
            if self._closed:
                raise RuntimeError("the job queue is shut down")
            self._jobs[job.id] = job
            self._queue.append(job)
            self._forget_old()
            if self._worker is None:
                # Started on first use so that a process that never runs long work holds no idle thread.
                self._worker = threading.Thread(target=self._run_forever, name="jobs", daemon=True)
                self._worker.start()
            self._changed.notify_all()
            snapshot = job.to_dict()
        self._notify(snapshot)
        return job

    # -- reading ----------------------------------------------------------------------------------
    def get(self, job_id: str) -> Snapshot | None:
        """A snapshot of the job (taken under the lock, so never half-updated), or None if unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
            return job.to_dict() if job is not None else None

    def result(self, job_id: str) -> Any:
        """The finished job's Python result (IndexReport, int or duplicate groups), else None (unknown or not
        finished). A failed job raises the exception it failed with, so a caller keeps its own error mapping."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.exception is not None:
                raise job.exception
            return job.result if job is not None else None

    def all(self) -> list[Snapshot]:
        """Snapshots of every remembered job, newest first."""
        with self._lock:
            return [job.to_dict() for job in reversed(self._jobs.values())]

    def active(self) -> Snapshot | None:
        """The running job, else the oldest queued one, else None."""
        with self._lock:
            running = [j for j in self._jobs.values() if j.state == RUNNING]
            job = running[0] if running else (self._queue[0] if self._queue else None)
            return job.to_dict() if job is not None else None

    def wait(self, job_id: str, timeout: float | None = None) -> Snapshot | None:
        """Block until the job has finished (or `timeout` seconds passed); its snapshot, None if unknown."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while (job := self._jobs.get(job_id)) is not None and job.state not in FINISHED:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._changed.wait(left)
            return job.to_dict() if job is not None else None

    # -- controlling ------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> Snapshot | None:
        """Ask a job to stop: a queued one is cancelled at once, a running one at its next batch boundary
        (what it committed stays). A finished job is left as it is. Its snapshot, or None if unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            job.cancel_event.set()
            if job.state == QUEUED:
                self._queue.remove(job)
                self._finish(job, CANCELLED)
            snapshot = job.to_dict()
        self._notify(snapshot)
        return snapshot

    def subscribe(self, callback: Observer) -> Callable[[], None]:
        """Call `callback(snapshot)` on every progress or state change of any job; returns `unsubscribe`.

        It runs in the thread that made the change (the worker thread, or the one that submitted or
        cancelled a queued job), outside the queue's lock, so it must be quick and must not block on the GUI.
        An exception it raises is logged and does not stop the job."""
        with self._lock:
            self._observers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._observers:
                    self._observers.remove(callback)

        return unsubscribe

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel every job and wait up to `timeout` seconds for the running one to reach a batch boundary.
        Later submits raise RuntimeError; `queue_for` then makes a fresh queue for the engine."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                job.cancel_event.set()
            cancelled = []
            while self._queue:
                job = self._queue.popleft()
                self._finish(job, CANCELLED)
                cancelled.append(job.to_dict())
            self._changed.notify_all()
            worker = self._worker
        for snapshot in cancelled:
            self._notify(snapshot)
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)
        with _queues_lock:
            engine = self._engine_ref()
            if engine is not None and _queues.get(engine) is self:
                del _queues[engine]

    @property
    def _engine(self) -> Any:
        engine = self._engine_ref()
        if engine is None:
            raise RuntimeError("the engine of this job queue was closed and dropped")
        return engine

    @property
    def closed(self) -> bool:
        """True once `shutdown` was called: submits raise RuntimeError."""
        return self._closed

    # -- the worker thread ------------------------------------------------------------------------
    def _run_forever(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._changed.wait()
                if self._closed:
                    return
                job = self._queue.popleft()
                job.state = RUNNING
                snapshot = job.to_dict()
            self._notify(snapshot)
            self._run(job)

    def _run(self, job: Job) -> None:
        try:
            result = {INDEX: self._index, REMOVE: self._remove, DUPLICATES: self._duplicates,
                      LABELS: self._labels}[job.kind](job)
        except Cancelled:  # a duplicates search stopped between batches; it changed nothing
            with self._lock:
                self._finish(job, CANCELLED)
                snapshot = job.to_dict()
        except Exception as exc:  # any failure is reported to observers and pollers, not lost
            log.warning("%s job %s failed: %s", job.kind, job.id, exc, exc_info=not _is_user_error(exc))
            with self._lock:
                job.error = str(exc) or type(exc).__name__
                job.exception = exc
                self._finish(job, FAILED)
                snapshot = job.to_dict()
        else:
            with self._lock:
                job.result = result
                cancelled = isinstance(result, IndexReport | LabelReport) and result.cancelled
                self._finish(job, CANCELLED if cancelled else DONE)
                snapshot = job.to_dict()
        self._notify(snapshot)

    def _index(self, job: Job) -> IndexReport:
        def progress(p: IndexProgress) -> None:
            with self._lock:
                job.done, job.total, job.current, job.eta_s = p.done, p.total, p.path, p.eta_s
                snapshot = job.to_dict()
            self._notify(snapshot)

        report = self._engine.index(job.paths, progress=progress, cancel=job.cancel_event,
                                    prune_missing=job.prune_missing)
        with self._lock:
            job.report = report.to_dict()
            job.errors = list(job.report["skipped"])
            job.eta_s = 0.0 if not report.cancelled else None
        return report

    def _remove(self, job: Job) -> int:
        removed = 0
        for folder in job.paths:
            if job.cancel_event.is_set():
                break
            with self._lock:
                job.current = folder
            removed += self._engine.remove_folder(folder)
            with self._lock:
                job.done += 1
                snapshot = job.to_dict()
            self._notify(snapshot)
        with self._lock:
            job.report = {"removed": removed}
        return removed

    def _duplicates(self, job: Job) -> list:
        def progress(done: int, total: int) -> None:
            with self._lock:
                job.done, job.total = done, total
                snapshot = job.to_dict()
            self._notify(snapshot)

        more = {"variants": True} if job.variants else {}  # only when asked, as the queue's docstring says
        groups = self._engine.duplicate_groups(job.threshold, progress=progress, cancel=job.cancel_event, **more)
        with self._lock:
            job.report = {"threshold": job.threshold, "groups": len(groups),
                          "images": sum(len(g.members) for g in groups)}
        return groups

    def _labels(self, job: Job) -> LabelReport:
        def progress(done: int, total: int, path: str) -> None:
            with self._lock:
                job.done, job.total, job.current = done, total, path
                snapshot = job.to_dict()
            self._notify(snapshot)

        report = self._engine.label_images(progress=progress, cancel=job.cancel_event)
        with self._lock:
            job.report = report.to_dict()
            job.errors = list(job.report["skipped"])
        return report

    def _finish(self, job: Job, state: str) -> None:
        job.state = state
        job.finished = time.time()
        job.current = None
        self._changed.notify_all()

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in FINISHED]
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.id]

    def _notify(self, snapshot: Snapshot) -> None:
        with self._lock:
            observers = list(self._observers)
        for callback in observers:
            try:
                callback(snapshot)
            except Exception:  # an observer's bug must not stop the job or the other observers
                log.exception("job observer failed")


_queues: weakref.WeakKeyDictionary[Any, JobQueue] = weakref.WeakKeyDictionary()
_queues_lock = threading.Lock()


def queue_for(engine: Any) -> JobQueue:
    """The one job queue of `engine` (made on first use; a fresh one after the last was shut down).

    Held weakly by the engine object, so a dropped Engine takes its queue with it (shut the queue down
    before closing the engine: a started worker thread waits until then)."""
    with _queues_lock:
        queue = _queues.get(engine)
        if queue is None:
            queue = _queues[engine] = JobQueue(engine)
        return queue

    def shutdown(self, timeout: float = 5.0) -> None:
        """JobQueue.shutdown (of this registry's own queue)."""
        self._queue.shutdown(timeout)


def _is_user_error(exc: Exception) -> bool:
    from core.model import WeightsError
    from core.store.base import StoreError

    return isinstance(exc, UserError | StoreError | WeightsError | OSError)
