"""The real Keras VGG16 graph (deterministic random weights): preprocessing, batching, determinism, weights."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from core.engine import Engine
from core.images import load_image
from core.model import (
    INPUT_SIZE,
    Extractor,
    WeightsError,
    preprocess,
    resolve_weights,
    to_model_pixels,
)
from core.store import IdentityMismatch


def pixels_of(paths) -> np.ndarray:
    return np.stack([to_model_pixels(load_image(p, draft=INPUT_SIZE).image) for p in paths])


def test_preprocessing_matches_keras_exactly():
    from keras.applications.vgg16 import preprocess_input

    pixels = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    assert np.array_equal(preprocess(pixels), preprocess_input(pixels.astype(np.float32)))


def test_batched_equals_one_at_a_time(shared_extractor, photo_dir):
    pixels = pixels_of(sorted(photo_dir.glob("*.jpg"))[:6])
    batched = shared_extractor.embed(pixels)
    single = np.concatenate([shared_extractor.embed(p[None]) for p in pixels])
    assert batched.shape == (6, 512)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert (np.sum(batched * single, axis=1) >= 0.9999).all()


@pytest.mark.parametrize("runtime", ["tensorflow", "onnxruntime"])
def test_fc1_descriptor_is_4096d_and_batch_invariant(photo_dir, runtime):
    extractor = Extractor("fc1", resolve_weights("random", "fc1"), batch_size=3, runtime=runtime, precision="fp32")
    pixels = pixels_of(sorted(photo_dir.glob("*.jpg"))[:4])
    batched = extractor.embed(pixels)
    assert batched.shape == (4, 4096)
    assert extractor.identity.dims == 4096 and extractor.identity.descriptor == "fc1"
    single = np.concatenate([extractor.embed(p[None]) for p in pixels])
    assert (np.sum(batched * single, axis=1) >= 0.9999).all()


def test_random_weights_are_identical_in_every_process(photo_dir):
    """Another process, on the Keras graph: the same vector as this one's (ONNX Runtime fp32) extractor."""
    image = sorted(photo_dir.glob("*.jpg"))[0]
    code = (
        "import json, sys; from tests.test_model import pixels_of; "
        "from core.model import Extractor, resolve_weights; "
        "e = Extractor('gem', resolve_weights('random', 'gem'), runtime='tensorflow', precision='fp32'); "
        "print(json.dumps(e.embed(pixels_of([sys.argv[1]]))[0].tolist()))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(image)], capture_output=True, text=True, check=True)
    other = np.array(json.loads(out.stdout.strip().splitlines()[-1]), dtype=np.float32)
    mine = Extractor("gem", resolve_weights("random", "gem"), precision="fp32").embed(pixels_of([image]))[0]
    assert float(other @ mine) >= 0.99999


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="weights file not found"):
        resolve_weights(str(tmp_path / "nope.h5"), "gem")


@pytest.mark.parametrize("runtime", ["tensorflow", "onnxruntime"])
def test_a_file_that_is_not_vgg16_is_refused(tmp_path, runtime):
    import h5py

    bogus = tmp_path / "bogus.h5"
    with h5py.File(bogus, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(WeightsError, match="does not hold VGG16 weights"):
        Extractor("gem", resolve_weights(str(bogus), "gem"), runtime=runtime)


@pytest.mark.parametrize(("descriptor", "labels"), [("gem", False), ("fc1", False), ("gem", True)])
def test_onnx_runtime_equals_the_keras_graph(descriptor, labels, photo_dir):
    """Every output, the labels head's class probabilities too, equals Keras' own VGG16 (include_top)."""
    weights = resolve_weights("random", descriptor, labels)
    keras_graph = Extractor(descriptor, weights, runtime="tensorflow", precision="fp32", labels=labels)
    onnx_graph = Extractor(descriptor, weights, runtime="onnxruntime", precision="fp32", labels=labels)
    pixels = pixels_of(sorted(photo_dir.glob("*.jpg"))[:4])
    outs_keras, outs_onnx = keras_graph._net.run(preprocess(pixels)), onnx_graph._net.run(preprocess(pixels))
    assert len(outs_keras) == len(outs_onnx) == (2 if labels else 1)
    for raw_keras, raw_onnx in zip(outs_keras, outs_onnx, strict=True):
        assert raw_keras.shape == raw_onnx.shape
        assert np.abs(raw_keras - raw_onnx).max() <= 1e-4 * np.abs(raw_keras).max()
    assert (np.sum(keras_graph.embed(pixels) * onnx_graph.embed(pixels), axis=1) >= 0.99999).all()


def test_a_keras_weights_file_gives_the_same_vectors_on_both_runtimes(tmp_path, photo_dir):
    """A legacy .h5 (the format of Keras' published files) written by Keras itself, read both ways."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(3)
    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(224, 224, 3))
    path = tmp_path / "vgg16-other.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    weights = resolve_weights(str(path), "gem")
    assert weights.weights_id.startswith("md5:")
    pixels = pixels_of(sorted(photo_dir.glob("*.jpg"))[:3])
    on_keras = Extractor("gem", weights, runtime="tensorflow", precision="fp32").embed(pixels)
    on_onnx = Extractor("gem", weights, runtime="onnxruntime", precision="fp32").embed(pixels)
    assert (np.sum(on_keras * on_onnx, axis=1) >= 0.99999).all()


@pytest.mark.parametrize("runtime", ["tensorflow", "onnxruntime"])
def test_imagenet_offline_without_cache_says_how_to_fix(tmp_path, monkeypatch, runtime):
    import urllib.error
    import urllib.request

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)  # no network here; don't even try
    source = resolve_weights("imagenet", "gem")
    assert source.path is None and source.weights_id == "imagenet"
    with pytest.raises(WeightsError) as err:
        Extractor("gem", source, runtime=runtime)
    message = str(err.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message and "--weights PATH" in message
    assert "network is unreachable" in message and not list(tmp_path.rglob("*.part"))


def test_imagenet_weights_are_found_in_the_keras_cache_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    cached = tmp_path / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    cached.write_bytes(b"x")
    assert resolve_weights("imagenet", "gem").path == cached
    assert resolve_weights("imagenet", "fc1").path is None  # fc1 needs the full file


def test_engine_refuses_to_mix_models(settings, shared_extractor, photo_dir):
    engine = Engine(settings, extractor=shared_extractor)
    engine.index([next(photo_dir.glob("*.jpg"))])
    engine.close()
    with pytest.raises(IdentityMismatch, match="vgg16-gem-512d-random-0"):
        Engine(settings.replace(descriptor="fc1"))
    with pytest.raises(IdentityMismatch, match="imagenet"):
        Engine(settings.replace(weights="imagenet"))
    Engine(settings).close()  # the same settings open it again
