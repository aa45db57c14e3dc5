"""Indexing real files into the embedded index: bad input, incremental runs, prune, cancel, search."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest

from core.store import SearchFilter
from tests.corpus import EXPECTED, build_corpus


@pytest.fixture
def corpus(tmp_path):
    return build_corpus(tmp_path / "corpus")


def test_bad_input_corpus_is_indexed_once_or_skipped_with_reason(engine, corpus):
    report = engine.index([corpus])
    real = os.path.realpath(corpus)
    indexed = {os.path.relpath(r.path, real) for r in engine.store.records()}
    assert indexed == {name for name, ok in EXPECTED.items() if ok}
    skipped = {os.path.relpath(p, real): reason for p, reason in report.skipped}
    assert set(skipped) == {name for name, ok in EXPECTED.items() if not ok}
    assert all(skipped.values())
    assert report.indexed == len(indexed) == engine.store.count()
    record = engine.store.get_by_path(os.path.join(real, "exif-rotated.jpg"))
    assert (record.width, record.height) == (60, 120)
    assert record.size > 0 and len(record.hash) == 32 and record.folder == real


def test_incremental_reindex_and_prune(engine, photo_dir, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(photo_dir, folder)
    first = engine.index([folder])
    total = len(list(folder.glob("*.jpg")))
    assert (first.indexed, first.unchanged, first.removed) == (total, 0, 0)

    again = engine.index([folder])
    assert (again.indexed, again.unchanged, again.removed) == (0, total, 0)

    changed = folder / "coffee.jpg"
    shutil.copy(folder / "astronaut.jpg", changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    (folder / "moon.jpg").unlink()
    third = engine.index([folder])
    assert (third.indexed, third.unchanged, third.removed) == (1, total - 2, 1)
    assert engine.store.count() == total - 1
    astronaut = engine.store.get_by_path(os.path.realpath(folder / "astronaut.jpg"))
    assert engine.store.get_by_path(os.path.realpath(changed)).hash == astronaut.hash


def test_a_missing_root_never_prunes_its_images(engine, photo_dir, tmp_path):
    folder = tmp_path / "drive"
    shutil.copytree(photo_dir, folder)
    engine.index([folder])
    count = engine.store.count()
    folder.rename(tmp_path / "unmounted")
    report = engine.index([folder])
    assert report.removed == 0 and engine.store.count() == count
    assert report.skipped and "no such file or folder" in report.skipped[0][1]


def test_cancel_stops_within_a_batch_and_keeps_what_was_committed(engine, photo_dir):
    cancel = threading.Event()
    seen = []

    def progress(p):
        seen.append(p)
        if p.done >= 3:
            cancel.set()

    report = engine.index([photo_dir], progress=progress, cancel=cancel)
    assert report.cancelled
    assert engine.store.count() == report.indexed <= engine.settings.batch_size
    assert seen[0].total == len(list(photo_dir.glob("*.jpg")))
    resumed = engine.index([photo_dir])
    assert resumed.indexed + resumed.unchanged == seen[0].total and not resumed.cancelled


def test_cancel_answers_within_a_second_while_a_decode_hangs(settings, shared_extractor, photo_dir, tmp_path,
                                                              monkeypatch):
    import functools

    import core.indexer
    from core.decode import DecodePool
    from core.engine import Engine
    from tests.test_decode import misbehaving_decode

    folder = tmp_path / "photos"
    shutil.copytree(photo_dir, folder)
    shutil.copy(folder / "coffee.jpg", folder / "hang.jpg")  # its decoder never returns (tests.test_decode)
    engine = Engine(replace(settings, batch_size=4), extractor=shared_extractor)
    monkeypatch.setattr(core.indexer, "DecodePool", functools.partial(DecodePool, decode=misbehaving_decode))
    cancel, committed, cancelled_at = threading.Event(), threading.Event(), []

    def cancel_once_the_hang_is_in_flight():
        committed.wait(300)
        while not (folder / "hang.jpg.started").exists():
            time.sleep(0.01)
        cancelled_at.append(time.monotonic())
        cancel.set()

    threading.Thread(target=cancel_once_the_hang_is_in_flight, daemon=True).start()
    report = engine.index([folder], progress=lambda p: committed.set(), cancel=cancel)
    answered_s = time.monotonic() - cancelled_at[0]
    print(f"cancel answered in {answered_s:.3f} s with a decode in flight")
    assert report.cancelled and answered_s < 5  # about 0.1 s; the bound is loose for a loaded machine
    assert report.indexed >= 4 and engine.store.count() == report.indexed
    monkeypatch.undo()
    (folder / "hang.jpg.started").unlink()
    resumed = engine.index([folder])
    assert resumed.unchanged == report.indexed and resumed.indexed + resumed.unchanged == 19
    engine.close()


def test_progress_reaches_the_total_with_an_eta(engine, photo_dir):
    seen = []
    engine.index([photo_dir], progress=seen.append)
    assert seen[-1].done == seen[-1].total == len(list(photo_dir.glob("*.jpg")))
    assert all(p.eta_s is None or p.eta_s >= 0 for p in seen)


def test_an_image_searched_for_itself_comes_first(engine, photo_dir):
    engine.index([photo_dir])
    for path in sorted(photo_dir.glob("*.jpg"))[:5]:
        hits = engine.search(path, k=5)
        assert hits[0].record.path == os.path.realpath(path)
        assert hits[0].score > 0.999
        assert all(-1 <= h.score <= 1 for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_similar_text_and_score_filters(engine, photo_dir):
    engine.index([photo_dir])
    by_path = engine.similar(str(photo_dir / "rocket.jpg"), k=3)
    by_id = engine.similar(by_path[0].record.id, k=3)
    assert [h.record.id for h in by_path] == [h.record.id for h in by_id]
    assert by_path[0].record.name == "rocket.jpg" and by_path[0].score > 0.999

    hits = engine.similar(str(photo_dir / "rocket.jpg"), k=10, filters=SearchFilter(text="COF"))
    assert [h.record.name for h in hits] == ["coffee.jpg"]
    scores = [h.score for h in engine.similar(str(photo_dir / "rocket.jpg"), k=30)]
    low, high = sorted(scores)[2], sorted(scores)[-3]
    kept = engine.similar(str(photo_dir / "rocket.jpg"), k=30, filters=SearchFilter(min_score=low, max_score=high))
    assert kept and all(low <= h.score <= high for h in kept) and len(kept) == len(scores) - 4


def test_duplicates_groups_a_resaved_copy(engine, photo_dir, tmp_path):
    from PIL import Image

    folder = tmp_path / "dups"
    shutil.copytree(photo_dir, folder)
    Image.open(folder / "chelsea.jpg").save(folder / "chelsea-copy.jpg", quality=60)
    engine.index([folder])
    groups = engine.duplicate_groups(threshold=0.995)  # distinct photos stay below 0.993 with random weights
    assert [sorted(m.record.name for m in g.members) for g in groups] == [["chelsea-copy.jpg", "chelsea.jpg"]]


def test_kill_mid_run_loses_nothing_and_a_rerun_resumes(photo_dir, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(3):  # 54 files: enough batches of 4 to kill in the middle
        for src in photo_dir.glob("*.jpg"):
            shutil.copy(src, folder / f"{n}-{src.name}")
    total = len(list(folder.iterdir()))
    data = tmp_path / "data"
    cli = [sys.executable, "-m", "core", "--data-dir", str(data), "--weights", "random", "--batch-size", "4"]
    proc = subprocess.Popen([*cli, "index", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and count_rows(data) < 8:
            time.sleep(0.2)
        assert count_rows(data) >= 8, "indexing made no progress"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    committed = count_rows(data)
    assert 8 <= committed < total
    out = subprocess.run([*cli, "index", "--json", str(folder)], capture_output=True, text=True, check=True)
    import json

    report = json.loads(out.stdout)
    assert report["unchanged"] >= committed and report["indexed"] + report["unchanged"] == total
    assert report["count"] == total == count_rows(data)


def count_rows(data) -> int:
    if not (data / "index.sqlite3").exists():
        return 0
    try:
        with sqlite3.connect(data / "index.sqlite3", timeout=5) as db:
            return db.execute("SELECT count(*) FROM images").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not there yet
        return 0
