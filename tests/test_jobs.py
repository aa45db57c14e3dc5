"""The one job queue: a small fake engine for the queue's own rules, one real engine run end to end."""

from __future__ import annotations

import gc
import shutil
import threading
import weakref

import pytest

from core.indexer import IndexProgress, IndexReport
from core.jobs import JobQueue, queue_for
from core.store import StoreError


class FakeEngine:
    """Index runs that report progress and block until released (or cancelled)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.calls: list[tuple] = []
        self.running = 0
        self.most_at_once = 0

    def index(self, roots, progress=None, cancel=None, **extra) -> IndexReport:
        self.calls.append(("index", list(roots), extra))
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            progress(IndexProgress(1, 4, f"{roots[0]}/one.jpg", None))
            self.started.set()
            while not self.release.wait(0.01):
                if cancel.is_set():
                    return IndexReport(indexed=1, cancelled=True)
            progress(IndexProgress(4, 4, f"{roots[0]}/four.jpg", 0.0))
            return IndexReport(indexed=3, skipped=[(f"{roots[0]}/bad.jpg", "empty file")])
        finally:
            self.running -= 1

    def remove_folder(self, folder) -> int:
        self.calls.append(("remove", folder))
        return 2

    def duplicates(self, threshold):
        self.calls.append(("duplicates", threshold))
        return [["a", "b"], ["c", "d", "e"]]


@pytest.fixture
def fake():
    engine = FakeEngine()
    yield engine
    engine.release.set()
    queue_for(engine).shutdown(5)


def test_one_queue_per_engine_and_jobs_run_one_at_a_time_in_order(fake):
    queue = queue_for(fake)
    assert queue_for(fake) is queue and queue_for(FakeEngine()) is not queue
    first = queue.submit_index(["/a"])
    second = queue.submit_remove(["/b", "/c"])
    third = queue.submit_duplicates(0.9)
    assert fake.started.wait(5)
    assert queue.get(first.id)["state"] == "running" and queue.get(second.id)["state"] == "queued"
    assert queue.active()["job_id"] == first.id
    fake.release.set()
    assert queue.wait(third.id, 10)["state"] == "done"
    assert fake.most_at_once == 1
    assert [c[0] for c in fake.calls] == ["index", "remove", "remove", "duplicates"]
    done = queue.get(first.id)
    assert done["kind"] == "index" and (done["done"], done["total"], done["eta_s"]) == (4, 4, 0.0)
    assert done["errors"] == [{"path": "/a/bad.jpg", "reason": "empty file"}] and done["report"]["indexed"] == 3
    assert queue.result(second.id) == 4 and queue.get(second.id)["report"] == {"removed": 4}
    assert queue.get(third.id)["report"] == {"threshold": 0.9, "groups": 2, "images": 5}
    assert len(queue.result(third.id)) == 2
    assert [j["job_id"] for j in queue.all()] == [third.id, second.id, first.id]
    assert set(done) == {"job_id", "kind", "state", "paths", "done", "total", "eta_s", "current", "errors",
                         "report", "error", "created", "finished"}


def test_observers_see_every_change_and_cancel_works_queued_and_running(fake):
    queue = queue_for(fake)
    seen: list[tuple[str, str, int]] = []
    unsubscribe = queue.subscribe(lambda s: seen.append((s["job_id"], s["state"], s["done"])))
    queue.subscribe(lambda s: 1 / 0)  # a broken observer neither stops the job nor the others
    running = queue.submit_index(["/a"])
    queued = queue.submit_index(["/b"])
    assert fake.started.wait(5)
    assert queue.cancel(queued.id)["state"] == "cancelled"  # at once
    assert queue.cancel(running.id)["state"] == "running"  # stops at its next boundary
    final = queue.wait(running.id, 10)
    assert final["state"] == "cancelled" and final["report"]["indexed"] == 1 and final["eta_s"] is None
    assert (running.id, "queued", 0) in seen and (running.id, "running", 1) in seen
    assert (queued.id, "cancelled", 0) in seen and seen[-1] == (running.id, "cancelled", 1)
    assert [c[1] for c in fake.calls] == [["/a"]]  # the cancelled queued job never ran
    unsubscribe()
    count = len(seen)
    queue.submit_duplicates(0.5)
    fake.release.set()
    queue.wait(queue.all()[0]["job_id"], 10)
    assert len(seen) == count
    assert queue.cancel("nope") is None and queue.get("nope") is None


def test_a_failed_job_says_why_and_the_queue_goes_on(fake):
    queue = queue_for(fake)
    fake.remove_folder = lambda folder: (_ for _ in ()).throw(StoreError("the index is read-only"))
    failed = queue.submit_remove(["/x"])
    assert queue.wait(failed.id, 10)["error"] == "the index is read-only"
    assert queue.get(failed.id)["state"] == "failed"
    with pytest.raises(StoreError, match="read-only"):
        queue.result(failed.id)  # the CLI keeps its exit status for the error's kind
    fake.release.set()
    assert queue.wait(queue.submit_index(["/y"], prune_missing=True).id, 10)["state"] == "done"
    assert fake.calls[-1] == ("index", ["/y"], {"prune_missing": True})


def test_shutdown_cancels_everything_and_a_fresh_queue_follows(fake):
    queue = queue_for(fake)
    running = queue.submit_index(["/a"])
    queued = queue.submit_index(["/b"])
    assert fake.started.wait(5)
    queue.shutdown(5)
    assert queue.get(running.id)["state"] == "cancelled" and queue.get(queued.id)["state"] == "cancelled"
    with pytest.raises(RuntimeError):
        queue.submit_duplicates(0.9)
    assert queue_for(fake) is not queue and not queue_for(fake).closed


def test_wait_times_out_on_a_running_job(fake):
    queue = queue_for(fake)
    job = queue.submit_index(["/a"])
    assert queue.wait(job.id, 0.05)["state"] in ("queued", "running")


def test_a_dropped_engine_takes_its_queue_with_it():
    engine = FakeEngine()
    queue = weakref.ref(queue_for(engine))
    del engine
    gc.collect()
    assert queue() is None


def test_real_engine_index_remove_and_duplicates(engine, tmp_path, photo_dir):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("coffee.jpg", "rocket.jpg", "moon.jpg"):
        shutil.copy(photo_dir / name, folder / name)
    shutil.copy(photo_dir / "coffee.jpg", folder / "coffee copy.jpg")
    (folder / "broken.jpg").write_bytes(b"not an image")
    queue = queue_for(engine)
    try:
        states: list[str] = []
        queue.subscribe(lambda s: states.append(s["state"]))
        indexed = queue.wait(queue.submit_index([str(folder)]).id, 120)
        assert indexed["state"] == "done" and indexed["report"]["indexed"] == 4
        assert indexed["done"] == indexed["total"] == 5 and len(indexed["errors"]) == 1
        assert isinstance(queue.result(indexed["job_id"]), IndexReport)
        duplicates = queue.submit_duplicates(0.999)
        assert queue.wait(duplicates.id, 60)["report"]["groups"] == 1
        assert sorted(r.name for r in queue.result(duplicates.id)[0]) == ["coffee copy.jpg", "coffee.jpg"]
        removed = queue.wait(queue.submit_remove([str(folder)]).id, 60)
        assert removed["report"] == {"removed": 4} and engine.store.count() == 0
        assert states[0] == "queued" and "running" in states and states[-1] == "done"
        assert isinstance(JobQueue, type)
    finally:
        queue.shutdown(10)
