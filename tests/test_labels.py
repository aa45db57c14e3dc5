"""Labels from VGG16's own ImageNet classifier: the two-output graph, the indexer, the labels pass, CLI and API.

Random weights (the head has the full layer shapes): the names are arbitrary, so these tests check the plumbing
(the right images get the labels the network gives, through every front end), never what a label says.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from core.api import create_app
from core.engine import Engine, LabelsOff
from core.images import load_image
from core.jobs import queue_for
from core.model import (
    INPUT_SIZE,
    LABEL_MIN_PROBABILITY,
    LABEL_TOP,
    Extractor,
    class_names,
    resolve_weights,
    to_model_pixels,
    top_labels,
)
from core.runtime import this_cpu

pytest_plugins = ["tests.es_fixtures"]

PHOTOS = ["coffee.jpg", "rocket.jpg", "astronaut.jpg"]


def pixels_of(paths) -> np.ndarray:
    return np.stack([to_model_pixels(load_image(p, draft=INPUT_SIZE).image) for p in paths])


@pytest.fixture(scope="module")
def labelled() -> Extractor:
    """One gem extractor with the labels head for the module (building it costs tens of seconds)."""
    return Extractor("gem", resolve_weights("random", "gem", labels=True), batch_size=2, runtime="onnxruntime",
                     precision="fp32", labels=True)


@pytest.fixture(params=["embedded", "elasticsearch"])
def both_backends(request, settings):
    """The test's settings on each backend (a fresh alias of the shared Elasticsearch test server)."""
    if request.param == "embedded":
        return settings
    url, alias = request.getfixturevalue("es_url"), request.getfixturevalue("es_alias")
    return settings.replace(backend="elasticsearch", es_url=url, es_index=alias)


@pytest.fixture
def folder(tmp_path, photo_dir):
    """Three real photos in a folder of their own."""
    target = tmp_path / "photos"
    target.mkdir()
    for name in PHOTOS:
        shutil.copy(photo_dir / name, target / name)
    return target


def expected_labels(extractor: Extractor, folder, names=PHOTOS) -> dict[str, tuple[str, ...]]:
    """What the network says of each photo, by file name."""
    _, labels = extractor.embed_labelled(pixels_of([folder / name for name in names]))
    return dict(zip(names, labels, strict=True))


def labels_by_name(engine: Engine) -> dict[str, tuple[str, ...] | None]:
    """Each indexed image's labels by file name (None: never labelled)."""
    records = {r.id: r for r in engine.store.records()}
    notes = engine.annotations_of(records)
    return {os.path.basename(r.path): (notes[i].labels if i in notes and notes[i].labelled else None)
            for i, r in records.items()}


# -- the graph ---------------------------------------------------------------------------------------------

def test_class_names_are_imagenet_1k_in_keras_order():
    names = class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[999] == "toilet paper"


def test_top_labels_keeps_the_likeliest_above_the_confidence():
    probabilities = np.zeros((3, 1000), np.float32)
    probabilities[0, [1, 2, 3]] = [0.5, 0.3, 0.05]  # the third is below LABEL_MIN_PROBABILITY
    probabilities[1, :] = 1 / 1000  # unsure of everything: no label
    probabilities[2, :7] = 0.14  # more classes above the confidence than LABEL_TOP
    labels = top_labels(probabilities)
    names = class_names()
    assert labels[0] == (names[1], names[2]) and labels[1] == ()
    assert labels[2] == tuple(names[:LABEL_TOP]) and LABEL_MIN_PROBABILITY == 0.1


def test_the_labels_head_leaves_descriptors_unchanged_and_gives_probabilities(labelled, shared_extractor, photo_dir):
    pixels = pixels_of([photo_dir / name for name in PHOTOS])
    vectors, probabilities = labelled._forward(pixels)
    assert probabilities.shape == (3, 1000) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert (np.sum(vectors * shared_extractor.embed(pixels), axis=1) >= 0.99999).all()
    same_vectors, labels = labelled.embed_labelled(pixels)
    assert np.array_equal(same_vectors, vectors) and labels == top_labels(probabilities)
    with pytest.raises(ValueError, match="without labels"):
        shared_extractor.embed_labelled(pixels)


OPENVINO = importlib.util.find_spec("openvino") is not None
CPU = this_cpu()


@pytest.mark.skipif(not OPENVINO, reason="OpenVINO is not installed")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_runs_the_same_two_output_graph(precision, labelled, photo_dir):
    if precision == "bf16" and not CPU.has_bf16:
        pytest.skip(f"{CPU.label()} has no bf16 instructions")
    other = Extractor("gem", resolve_weights("random", "gem", labels=True), runtime="openvino",
                      precision=precision, labels=True)
    assert other.describe()["precision"] == precision
    pixels = pixels_of([photo_dir / name for name in PHOTOS])
    (vectors, probabilities), (base_vectors, base_probabilities) = other._forward(pixels), labelled._forward(pixels)
    assert probabilities.shape == (3, 1000) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    assert (np.sum(vectors * base_vectors, axis=1) >= (0.99999 if precision == "fp32" else 0.999)).all()
    if precision == "fp32":
        assert np.abs(probabilities - base_probabilities).max() <= 1e-4


def test_labels_need_the_full_weights_file(tmp_path):
    """The notop file (all the default descriptor needs) lacks the head: a clear error, not a crash."""
    import h5py

    from core.model import WeightsError

    notop = tmp_path / "notop.h5"
    with h5py.File(notop, "w") as f:
        group = f.create_group("block1_conv1")
        group.attrs["weight_names"] = ["k", "b"]
    with pytest.raises(WeightsError, match="with the top layers"):
        Extractor("gem", resolve_weights(str(notop), "gem", labels=True), runtime="onnxruntime", labels=True)


# -- the indexer and the labels pass ------------------------------------------------------------------------

def test_indexing_with_labels_on_stores_each_images_labels(both_backends, labelled, folder):
    engine = Engine(both_backends.replace(labels=True), extractor=labelled)
    try:
        report = engine.index([folder])
        assert report.indexed == 3 and not report.warnings
        assert labels_by_name(engine) == expected_labels(labelled, folder)
        assert engine.info()["labels"] is True and engine.info()["labels_meaningful"] is False
        word = next(label for labels in expected_labels(labelled, folder).values() for label in labels)
        assert {os.path.basename(r.path) for r in engine.search_words(f'"{word}"')} == {
            name for name, labels in expected_labels(labelled, folder).items() if word in labels}
    finally:
        engine.close()


def test_the_labels_pass_labels_what_was_indexed_before(both_backends, shared_extractor, labelled, folder):
    settings = both_backends
    before = Engine(settings, extractor=shared_extractor)  # labels off: the images get none
    before.index([folder])
    assert set(labels_by_name(before).values()) == {None}
    with pytest.raises(LabelsOff, match="labels are off"):
        before.label_images()
    before.close()
    (folder / "rocket.jpg").write_bytes(b"no longer a picture")  # a file that fails costs only itself

    engine = Engine(settings.replace(labels=True), extractor=labelled)
    queue, seen = queue_for(engine), []
    unsubscribe = queue.subscribe(lambda job: job["kind"] == "labels" and seen.append(job))
    try:
        job = queue.submit_labels()
        snapshot = queue.wait(job.id, 300)
        report = queue.result(job.id)
        assert snapshot["state"] == "done" and report.labelled == 2 and report.already == 0
        assert [e["path"] for e in snapshot["errors"]] == [str(folder / "rocket.jpg")]
        assert snapshot["report"]["labels_meaningful"] is False
        assert any(s["state"] == "running" and s["total"] == 3 and s["done"] > 0 for s in seen)
        expected = expected_labels(labelled, folder, ["coffee.jpg", "astronaut.jpg"])
        assert labels_by_name(engine) == {**expected, "rocket.jpg": None}
        again = engine.label_images()  # resumes with what is still unlabelled: the broken file only
        assert (again.labelled, again.already, len(again.skipped)) == (0, 2, 1)
    finally:
        unsubscribe()
        queue.shutdown()
        engine.close()


def test_a_cancelled_pass_keeps_nothing_half_done(settings, shared_extractor, labelled, folder):
    before = Engine(settings, extractor=shared_extractor)
    before.index([folder])
    before.close()
    engine = Engine(settings.replace(labels=True), extractor=labelled)
    try:
        cancel = threading.Event()
        cancel.set()
        report = engine.label_images(cancel=cancel)
        assert report.cancelled and report.labelled == 0
        assert set(labels_by_name(engine).values()) == {None}
    finally:
        engine.close()


# -- front ends ----------------------------------------------------------------------------------------------

def test_api_starts_the_labels_pass_as_a_job(settings, shared_extractor, labelled, folder):
    off = Engine(settings, extractor=shared_extractor)
    off.index([folder])
    response = create_app(off, off.settings).test_client().post("/api/labels")
    assert response.status_code == 409 and "labels are off" in response.get_json()["detail"]
    off.close()

    engine = Engine(settings.replace(labels=True), extractor=labelled)
    client = create_app(engine, engine.settings).test_client()
    try:
        started = client.post("/api/labels")
        assert started.status_code == 202 and started.headers["Location"] == started.get_json()["status_url"]
        job = queue_for(engine).wait(started.get_json()["job_id"], 300)
        status = client.get(started.headers["Location"]).get_json()
        assert status["kind"] == "labels" and status["state"] == "done" == job["state"]
        assert status["report"]["labelled"] == 3 and status["done"] == status["total"] == 3
        expected = expected_labels(labelled, folder)
        word = next(label for labels in expected.values() for label in labels)
        found = client.post("/api/search", json={"text": f'"{word}"'}).get_json()["results"]
        assert found and all(word in hit["labels"] for hit in found)
    finally:
        queue_for(engine).shutdown()
        engine.close()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, timeout=600)


def test_cli_labels_command(tmp_path, folder):
    base = ["--data-dir", str(tmp_path / "data"), "--weights", "random"]
    assert run_cli(*base, "index", str(folder)).returncode == 0
    refused = run_cli(*base, "labels")
    assert refused.returncode == 1 and "labels are off" in refused.stderr
    done = run_cli(*base, "--labels", "true", "labels", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["labelled"] == 3 and report["skipped"] == [] and report["labels_meaningful"] is False
    info = json.loads(run_cli(*base, "--labels", "true", "info", "--json").stdout)
    assert info["labels"] is True and info["labels_meaningful"] is False
    words = run_cli(*base, "search", "--text", "photos", "--json")  # the folder's name: every image
    hits = json.loads(words.stdout)["results"]
    assert len(hits) == 3 and all(isinstance(hit["labels"], list) for hit in hits)


def test_desktop_label_images_action_runs_the_pass(qtbot, tmp_path, shared_extractor, labelled, folder):
    from PySide6.QtCore import QSettings

    from core.config import Settings
    from desktop.index_widgets import outcome
    from desktop.main_window import MainWindow
    from desktop.preferences import Preferences

    settings = Settings(data_dir=str(tmp_path / "data"), weights="random", api_port=0)
    before = Engine(settings, extractor=shared_extractor)
    before.index([folder])
    before.close()
    prefs = Preferences(QSettings(str(tmp_path / "prefs.ini"), QSettings.Format.IniFormat))
    window = MainWindow(settings.replace(labels=True), prefs, extractor=labelled, thumbnail_dir=tmp_path / "thumbs",
                        serve_api=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.engine is not None and window.model_ready, timeout=120_000)
    tools = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Tools")
    assert window.act.labels in tools.actions()
    with qtbot.waitSignal(window.jobs.finished, timeout=300_000) as done:
        window.act.labels.trigger()
    job = done.args[0]
    assert (job["kind"], job["state"], job["report"]["labelled"]) == ("labels", "done", 3)
    assert outcome(job) == "Labelling finished: 3 images labelled, 0 skipped (random weights: the labels mean nothing)"
    assert set(labels_by_name(window.engine)) == set(PHOTOS) and None not in labels_by_name(window.engine).values()
    window.close()
