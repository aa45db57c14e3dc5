"""Engine calls off the GUI thread: a Worker runs jobs one at a time in its own QThread.

The window holds two: one for searches (model load, embed, kNN, duplicates, opening the index) and one
for indexing. Both call the same thread-safe Engine, so a search issued while a folder is being indexed
waits at most for the batch the indexer is embedding (the extractor's lock), not for the whole run.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from core.config import Settings
from core.engine import Engine
from core.model import Extractor, resolve_weights
from core.store import open_store

log = logging.getLogger(__name__)

WORKER_NICE = 5  # workers and the job queue's thread run below the GUI thread's CPU priority
Done = Callable[[Any], None]
Failed = Callable[[Exception], None]


class _Runner(QObject):
    """Lives in the worker thread; runs each job it is sent and reports back."""

    finished = Signal(int, bool, object)  # job id, succeeded, result or exception

    @Slot(int, object)
    def run(self, job_id: int, job: Callable[[], Any]) -> None:
        try:
            result, ok = job(), True
        except Exception as exc:  # every failure goes back to the GUI thread, which decides what users see
            result, ok = exc, False
        self.finished.emit(job_id, ok, result)


class Worker(QObject):
    """A QThread plus a queue of jobs. `call` returns at once; `done`/`failed` run later in the GUI thread."""

    failed_unhandled = Signal(object)  # an exception from a job that passed no `failed` callback
    idle = Signal()  # the queue ran empty

    _submit = Signal(int, object)

    def __init__(self, name: str, parent: QObject | None = None, nice: int = 0):
        """`nice` > 0 lowers the thread's CPU priority below the GUI thread's (see lower_priority)."""
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._callbacks: dict[int, tuple[Done | None, Failed | None]] = {}
        self._thread = QThread()
        self._thread.setObjectName(name)
        self._runner = _Runner()
        self._runner.moveToThread(self._thread)
        self._submit.connect(self._runner.run)  # queued: the runner lives in the other thread
        self._runner.finished.connect(self._finished)  # queued back into this (the GUI) thread
        self._thread.start()
        if nice:
            self.call(lambda: lower_priority(nice))

    def call(self, job: Callable[[], Any], done: Done | None = None, failed: Failed | None = None) -> None:
        job_id = next(self._ids)
        self._callbacks[job_id] = (done, failed)
        self._submit.emit(job_id, job)

    @property
    def busy(self) -> bool:
        return bool(self._callbacks)

    @property
    def running(self) -> bool:
        return self._thread.isRunning()

    def stop(self) -> None:
        """Let the job in progress finish, drop the queued ones, end the thread."""
        self._thread.quit()
        self._thread.wait()
        self._callbacks.clear()

    @Slot(int, bool, object)
    def _finished(self, job_id: int, ok: bool, result: Any) -> None:
        done, failed = self._callbacks.pop(job_id, (None, None))
        if ok:
            if done is not None:
                done(result)
        elif failed is not None:
            failed(result)
        else:
            log.error("unhandled error in %s", self._thread.objectName(), exc_info=result)
            self.failed_unhandled.emit(result)
        if not self._callbacks:
            self.idle.emit()


def lower_priority(nice: int) -> None:
    """Let the calling thread yield the CPU to the GUI thread. On Linux niceness is per thread and inherited
    by the threads it starts later (TensorFlow's pools, the indexer's decoders), which do the heavy work."""
    if sys.platform.startswith("linux"):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    else:
        QThread.currentThread().setPriority(QThread.Priority.LowPriority)


def open_engine(settings: Settings, new_descriptor: str, extractors: Sequence[Extractor] = ()) -> Engine:
    """An Engine on the store `settings` name (runs in a worker: opening Elasticsearch may take seconds).

    `new_descriptor` is used only for an index that has none yet: an existing index keeps its own, unless
    `settings.descriptor` (from the command line or environment) asks for one explicitly. A loaded model of
    the same identity in `extractors` is reused, so changing e.g. the backend does not reload VGG16."""
    store = open_store(settings)
    try:
        stored = store.identity
        descriptor = settings.descriptor or (stored.descriptor if stored else new_descriptor)
        identity = resolve_weights(settings.weights, descriptor).identity(descriptor)
        reuse = next((e for e in extractors if e.identity == identity), None)
        return Engine(settings.replace(descriptor=descriptor), store=store, extractor=reuse)
    except BaseException:
        store.close()
        raise


def warm_up(engine: Engine) -> Extractor:
    """Build VGG16 if needed (the Extractor runs its first batch where it is built), with the cyclic garbage
    collector paused: when TensorFlow is the runtime, objects freed from another thread while its graph was
    being built and traced intermittently crashed it (segmentation faults seen under heavy load)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return engine.extractor()
    finally:
        if collecting:
            gc.enable()
