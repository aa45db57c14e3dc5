"""Where VGG16 runs: the runtime, the numeric precision and the device, chosen from what this computer has.

Runtimes and the precisions each offers:
- "onnxruntime" (base install): fp32, or int8 (static QDQ quantization: int8 weights per output channel,
  uint8 activations, ranges calibrated on the photos in core/calibration/; fast with VNNI).
- "openvino" (optional extra, imported only when used): fp32, bf16 (`INFERENCE_PRECISION_HINT`, fast with
  AMX), int8 (the same QDQ graph).
- "tensorflow" (optional extra, imported only when used): fp32, or bf16 through Keras' "mixed_bfloat16"
  dtype policy.
- "cuda": ONNX Runtime's CUDA execution provider (the `onnxruntime-gpu` package), fp32, on GPU 0.
All of them run the graph core/onnx_vgg.py writes (TensorFlow builds Keras' own VGG16 with the same weights).
With `labels` the graph has a second output, the ImageNet class probabilities of Keras' classifier head, from the
same forward pass, on every runtime and precision above (int8 quantizes the head's Gemms too; the agreement check
compares descriptors only, since labels are a by-product).

Precision does not change the model identity: bf16 and int8 descriptors agree with fp32 ones (cosine >= 0.999
per image, tests/test_precision.py), so vectors from different precisions share one index.

"auto" picks the GPU when ONNX Runtime can run on one. Otherwise it takes the paths this CPU's features promise
(int8 with VNNI; bf16 with AVX512_BF16 or AMX, on OpenVINO), checks each on this machine against fp32 (cosine
>= AGREEMENT_MIN_COSINE on the mirrored calibration photos, and more than 1.1x as fast) and runs the fastest
that passes; else fp32 on ONNX Runtime (TensorFlow when ONNX Runtime is missing). The check is measured once and
cached per machine in the user cache dir (a JSON file keyed by CPU, package versions, descriptor and weights).

Explicit choices: a runtime/precision pair that does not exist (e.g. int8 on TensorFlow) raises ConfigError.
A precision the CPU has no instructions for (bf16 without AVX512_BF16/AMX, int8 without VNNI), or a GPU that is
not there, falls back to fp32 on the CPU with one warning log line; `Forward.precision`/`device` say what runs.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import PRECISIONS, RUNTIMES, ConfigError, cache_dir
from core.onnx_vgg import build_graph, preprocess

log = logging.getLogger(__name__)

OFFERED = {"onnxruntime": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8"),
           "tensorflow": ("fp32", "bf16"), "cuda": ("fp32",)}
AGREEMENT_MIN_COSINE = 0.999  # issue 13: every non-fp32 path agrees with fp32 at least this well, per image
CALIBRATION_DIR = Path(__file__).parent / "calibration"
# Layers kept in fp32 in the int8 graph. block1_conv1 sees raw pixels (3 channels, 0.3 % of the FLOPs);
# see QUANT_VERSION's note for the measurement behind the list. With labels, the classifier's last layer and
# softmax too (0.03 % of the FLOPs): uint8 probabilities lose the small ones (sums measured 0.71-0.98).
INT8_FP32_LAYERS = ["block1_conv1", "predictions", "probabilities"]
QUANT_VERSION = 1  # part of the int8 cache key: bump when the calibration photos or options change
SHOWN_FLAGS = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")

Batch = np.ndarray  # (n, 224, 224, 3) float32, preprocessed (caffe mode)


@dataclass(frozen=True)
class Cpu:
    """The CPU's model name and feature flags (Linux: /proc/cpuinfo; elsewhere: NumPy's dispatch probe)."""

    model: str
    flags: frozenset[str]

    @property
    def fast_bf16(self) -> bool:
        """AMX tiles: where bf16 measured 3.6x fp32 on OpenVINO (notes/platform-facts.md)."""
        return "amx_bf16" in self.flags

    @property
    def has_bf16(self) -> bool:
        """bfloat16 instructions of any kind (AMX or AVX-512)."""
        return bool({"amx_bf16", "avx512_bf16"} & self.flags)

    @property
    def has_vnni(self) -> bool:
        """int8 dot products; without them ONNX Runtime's u8s8 kernels can saturate (and are not faster)."""
        return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & self.flags)

    def label(self) -> str:
        """The CPU for people: "cpu: MODEL NAME (flag, ...)", the flags among SHOWN_FLAGS that it has."""
        shown = [f for f in SHOWN_FLAGS if f in self.flags]
        return f"cpu: {self.model}" + (f" ({', '.join(shown)})" if shown else "")


@functools.cache
def this_cpu() -> Cpu:
    """This machine's CPU, read once per process."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        model = fields.get("model name") or platform.processor() or platform.machine()
        return Cpu(model, frozenset(fields.get("flags", "").split()))
    except OSError:  # not Linux: NumPy probes the same instructions for its own kernels
        from numpy._core._multiarray_umath import __cpu_features__

        names = {"AVX512BF16": "avx512_bf16", "AVX512VNNI": "avx512_vnni", "AVXVNNI": "avx_vnni",
                 "AVX512F": "avx512f", "AVX2": "avx2"}
        return Cpu(platform.processor() or platform.machine(),
                   frozenset(flag for key, flag in names.items() if __cpu_features__.get(key)))


@dataclass
class Forward:
    """A built network: `run` maps a preprocessed batch to the graph's outputs, in order: the raw activations
    (block5_conv3 NHWC (n, 14, 14, 512), or fc1 (n, 4096)), then with labels the class probabilities (n, 1000),
    all float32."""

    run: Callable[[Batch], list[np.ndarray]]
    runtime: str
    precision: str
    device: str
    reason: str  # why this path: "asked for", or what "auto" measured


def build(descriptor: str, params: dict, runtime: str, precision: str, *, weights_id: str,
          pool: Callable[[np.ndarray], np.ndarray], labels: bool = False) -> Forward:
    """The network for `descriptor` ("gem"/"fc1") with `params` (layer -> (kernel, bias), Keras layout, float32).

    `weights_id` keys the int8 and measurement caches; `pool` maps raw activations to unit descriptors
    (needed by "auto" to compare paths); `labels` adds the classifier head's output (params must then hold
    fc1, fc2 and predictions: core.onnx_vgg.layer_shapes). Raises ConfigError for an unknown or impossible
    choice, and for a runtime that is not installed.
    """
    net = _Net(descriptor, params, labels, weights_id)
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if runtime != "auto" and precision != "auto" and precision not in OFFERED[runtime]:
        raise ConfigError(f"the {runtime} runtime does not offer {precision}; it offers "
                          f"{', '.join(OFFERED[runtime])} (or precision 'auto')")
    cpu = this_cpu()
    if runtime in ("auto", "cuda") and precision in ("auto", "fp32"):
        forward = _cuda(descriptor, params, asked=runtime == "cuda", labels=labels)
        if forward:
            return forward
        if runtime == "cuda":
            runtime = "auto"
    if precision == "auto":
        return _auto(net, runtime, cpu, pool)
    if runtime == "auto":
        runtime = _runtime_for(precision)
    if precision == "bf16" and not cpu.has_bf16 or precision == "int8" and not cpu.has_vnni:
        need = "AVX512_BF16 or AMX" if precision == "bf16" else "VNNI (AVX512_VNNI, AVX_VNNI or AMX)"
        log.warning("precision %s asked for, but this CPU (%s) lacks %s: running fp32 instead",
                    precision, cpu.model, need)
        return _build(net, runtime, "fp32", cpu, "asked for (without CPU support)")
    return _build(net, runtime, precision, cpu, "asked for")


def _runtime_for(precision: str) -> str:
    """The installed runtime that runs `precision` when only the precision was asked for (int8 is quantized by
    ONNX Runtime's tools, so it always needs ONNX Runtime)."""
    order = {"fp32": ("onnxruntime", "tensorflow", "openvino"), "bf16": ("openvino", "tensorflow"),
             "int8": ("onnxruntime",)}[precision]
    for name in order:
        if importlib.util.find_spec(name):
            return name
    raise ConfigError(f"precision {precision} needs one of these runtimes installed: {', '.join(order)} "
                      "(e.g. pip install 'image-search[openvino]')")


@dataclass(frozen=True, eq=False)
class _Net:
    """What is built: the descriptor's graph with these weights, with or without the labels output."""

    descriptor: str
    params: dict
    labels: bool
    weights_id: str

    def onnx_bytes(self) -> bytes:
        return build_graph(self.descriptor, self.params, self.labels).SerializeToString()


def _build(net: _Net, runtime: str, precision: str, cpu: Cpu, reason: str) -> Forward:
    if runtime == "tensorflow":
        run = _keras(net, precision)
    elif runtime == "openvino":
        run, precision = _openvino(net, precision)
    else:
        run, _ = _ort(_int8_model(net) if precision == "int8" else net.onnx_bytes(), ["CPUExecutionProvider"])
    return Forward(run, runtime, precision, cpu.label(), reason)


def _candidates(cpu: Cpu, runtime: str) -> list[tuple[str, str]]:
    """The faster paths this CPU's features promise, within `runtime` ("auto": any installed one)."""
    openvino = runtime in ("auto", "openvino") and importlib.util.find_spec("openvino") is not None
    found = []
    if cpu.has_vnni and openvino:
        found.append(("openvino", "int8"))  # 3.8x fp32 forward on the AMD EPYC (bench/extract.py)
    elif cpu.has_vnni and runtime in ("auto", "onnxruntime") and importlib.util.find_spec("onnxruntime"):
        found.append(("onnxruntime", "int8"))  # 3.3x
    if cpu.has_bf16 and openvino:
        found.append(("openvino", "bf16"))  # 2.0x with AVX512_BF16; 5.9x with AMX (platform facts)
    elif cpu.has_bf16 and runtime == "tensorflow":
        found.append(("tensorflow", "bf16"))  # Keras mixed_bfloat16: 1.7x TF fp32 here, 3.7x with AMX (platform facts)
    return found


def _auto(net: _Net, runtime: str, cpu: Cpu, pool) -> Forward:
    """The fastest promised path that agreed with fp32 and ran faster here (measured once, cached); else fp32."""
    base_runtime = _runtime_for("fp32") if runtime == "auto" else runtime
    candidates = _candidates(cpu, runtime)
    if not candidates:
        return _build(net, base_runtime, "fp32", cpu, "auto: fp32 (no faster path here)")
    cache = _read_cache()
    verdicts, best, base = {}, None, None
    for candidate in candidates:
        key = _cache_key(cpu, net, candidate)
        if key not in cache:
            try:
                fast = _build(net, *candidate, cpu, "")
            except Exception as exc:  # an optional faster path that cannot be built here is skipped, never fatal
                log.warning("auto: %s %s cannot run here (%s: %s); skipped", *candidate, type(exc).__name__, exc)
                continue
            base = base or _build(net, base_runtime, "fp32", cpu, "")
            verdict = compare(fast, base, pool)
            verdict["usable"] = verdict["min_cosine"] >= AGREEMENT_MIN_COSINE and verdict["speedup"] > 1.1
            cache[key] = verdict
            _write_cache(cache)
            log.info("measured %s %s against fp32 on this CPU: %s", *candidate, verdict)
            if verdict["usable"] and (best is None or verdict["speedup"] > verdicts[best[0]]["speedup"]):
                best = (candidate, fast)  # keep only the best built one: fc1 graphs are large
        verdicts[candidate] = cache[key]
    summaries = {c: f"{c[0]} {c[1]}: min cosine {v['min_cosine']:.5f} to fp32, {v['speedup']:.2f}x its speed"
                 for c, v in verdicts.items()}
    for candidate, verdict in verdicts.items():
        if verdict["min_cosine"] < AGREEMENT_MIN_COSINE:
            log.warning("auto: not using %s, it disagrees with fp32 (min cosine %.5f < %s)",
                        " ".join(candidate), verdict["min_cosine"], AGREEMENT_MIN_COSINE)
    usable = [c for c, v in verdicts.items() if v["usable"]]
    if not usable:
        return _build(net, base_runtime, "fp32", cpu, f"auto: fp32 (rejected {'; '.join(summaries.values())})")
    choice = max(usable, key=lambda c: verdicts[c]["speedup"])
    forward = best[1] if best and best[0] == choice else _build(net, *choice, cpu, "")
    others = [summaries[c] + (" (not used: disagrees)" if verdicts[c]["min_cosine"] < AGREEMENT_MIN_COSINE else "")
              for c in verdicts if c != choice]
    forward.reason = f"auto: {summaries[choice]} (measured on this machine)" + (
        f"; also measured {'; '.join(others)}" if others else "")
    return forward


def compare(fast: Forward, base: Forward, pool: Callable[[np.ndarray], np.ndarray]) -> dict:
    """Descriptor cosines (fast vs base, per image) and forward speeds on the mirrored calibration photos (a
    labels output, when the graph has one, runs too but is not compared).

    Returns {"min_cosine", "mean_cosine", "speedup", "img_s": {"fast", "base"}}; rates are images/s of one
    warmed-up batch, so a rough figure (the bench measures properly).
    """
    batch = calibration_batch()[:, :, ::-1]  # mirrored: not the images int8 was calibrated on
    rates, vectors = [], []
    for forward in (fast, base):
        forward.run(batch[:2])  # first-call set-up is not speed
        start = time.perf_counter()
        vectors.append(pool(forward.run(batch)[0]))
        rates.append(len(batch) / (time.perf_counter() - start))
    cosines = np.sum(vectors[0] * vectors[1], axis=1)
    return {"min_cosine": round(float(cosines.min()), 6), "mean_cosine": round(float(cosines.mean()), 6),
            "speedup": round(rates[0] / rates[1], 3), "img_s": {"fast": round(rates[0], 2), "base": round(rates[1], 2)}}


def calibration_batch() -> Batch:
    """The calibration photos (core/calibration/*.jpg, already 224x224 RGB), preprocessed: (14, 224, 224, 3)."""
    from PIL import Image

    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(CALIBRATION_DIR.glob("*.jpg"))])
    return preprocess(pixels)


# --- ONNX Runtime ----------------------------------------------------------------------------------------------

def _ort(model: bytes | Path, providers: list[str]):
    """(run, session) on an ONNX Runtime session with the given execution providers; run returns every output."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=providers)
    return (lambda batch: session.run(None, {"pixels": np.ascontiguousarray(batch, np.float32)})), session


def _cuda(descriptor: str, params: dict, asked: bool, labels: bool = False) -> Forward | None:
    """VGG16 on GPU 0 through ONNX Runtime's CUDA execution provider, or None (one log line if `asked`)."""
    why = None
    if not importlib.util.find_spec("onnxruntime"):
        why = "ONNX Runtime is not installed"
    else:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            why = "this ONNX Runtime has no CUDA execution provider (install the [gpu] extra: onnxruntime-gpu)"
    if why is None:
        graph = build_graph(descriptor, params, labels).SerializeToString()
        run, session = _ort(graph, ["CUDAExecutionProvider", "CPUExecutionProvider"])
        if session.get_providers()[0] == "CUDAExecutionProvider":
            return Forward(run, "cuda", "fp32", f"cuda:0 {_gpu_name()}".strip(), "asked for" if asked else "auto: GPU")
        why = "the CUDA execution provider could not start (no NVIDIA GPU, or its driver/CUDA/cuDNN libraries)"
    (log.warning if asked else log.debug)("runtime cuda %s: %s; running on the CPU", "asked for" if asked else
                                          "not available", why)
    return None


def _gpu_name() -> str:
    """GPU 0's name from nvidia-smi when it is on the PATH (ONNX Runtime does not report it)."""
    if not shutil.which("nvidia-smi"):
        return ""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", "0"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _int8_model(net: _Net) -> Path:
    """The int8 QDQ graph for these weights: quantized once (tens of seconds), then read from the user cache.

    Static quantization (onnxruntime.quantization.quantize_static): weights int8 symmetric per output
    channel, activations uint8 with MinMax ranges from the calibration photos; INT8_FP32_LAYERS stay fp32.
    """
    import onnxruntime as ort

    safe_id = "".join(c if c.isalnum() or c in "-." else "_" for c in net.weights_id or "unnamed")
    graph = net.descriptor + ("-labels" if net.labels else "")
    path = cache_dir() / f"vgg16-{graph}-{safe_id}-int8-q{QUANT_VERSION}-ort{ort.__version__}.onnx"
    if path.is_file():
        return path
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    batch = calibration_batch()

    class Photos(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(batch[i : i + 4] for i in range(0, len(batch), 4))

        def get_next(self):
            part = next(self.batches, None)
            return None if part is None else {"pixels": part}

    log.info("quantizing VGG16 %s to int8 (once per machine; calibrating on %d photos)", graph, len(batch))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        fp32.write_bytes(net.onnx_bytes())
        partial = Path(tmp) / "int8.onnx"
        # quantize_static logs advice ("consider pre-processing ...") on the root logger; not for our users.
        with _root_logging_above(logging.WARNING):
            quantize_static(str(fp32), str(partial), Photos(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=INT8_FP32_LAYERS)
        staged = path.with_suffix(f".{os.getpid()}.part")
        shutil.move(partial, staged)
        staged.replace(path)  # whole or absent, even if two processes race
    return path


# --- OpenVINO and TensorFlow ----------------------------------------------------------------------------------

def _openvino(net: _Net, precision: str):
    """(run, precision that runs): OpenVINO reads the ONNX graph; bf16 is asked for with a hint and checked."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise ConfigError(f"the 'openvino' runtime is not installed here ({exc}): "
                          "pip install 'image-search[openvino]', or use runtime auto") from None
    core = ov.Core()
    model = core.read_model(str(_int8_model(net)) if precision == "int8" else net.onnx_bytes())
    hint = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}[precision]  # int8 layers run int8 whatever the hint
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
    honoured = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    if precision == "bf16" and "bfloat16" not in honoured:
        log.warning("OpenVINO did not honour bf16 on this CPU (it runs %s): running fp32", honoured)
        precision = "fp32"
    request = compiled.create_infer_request()
    outputs = range(len(compiled.outputs))

    def run(batch: Batch) -> list[np.ndarray]:
        result = request.infer({0: np.ascontiguousarray(batch, np.float32)})
        return [result[i].copy() for i in outputs]  # copies: the request reuses its buffers

    return run, precision


def _keras(net: _Net, precision: str):
    """Keras' own VGG16 with `params`; bf16 through the "mixed_bfloat16" dtype policy (outputs float32)."""
    descriptor = net.descriptor
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
        import tensorflow as tf
    except ImportError as exc:
        raise ConfigError(
            f"the 'tensorflow' runtime is not installed here ({exc}); use --runtime auto or onnxruntime"
        ) from None
    previous = keras.mixed_precision.global_policy()
    # The policy is global in Keras: set it only while building this model's layers.
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    try:
        base = keras.applications.VGG16(include_top=descriptor == "fc1" or net.labels, weights=None,
                                        input_shape=(224, 224, 3))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    for name, (kernel, bias) in net.params.items():
        base.get_layer(name).set_weights([kernel, bias])
    outputs = [base.get_layer("fc1" if descriptor == "fc1" else "block5_conv3").output]
    if net.labels:
        outputs.append(base.get_layer("predictions").output)  # Keras' softmax layer
    model = keras.Model(base.input, outputs)
    spec = tf.TensorSpec([None, 224, 224, 3], tf.float32)
    # Plain Keras calls need no AutoGraph conversion (which would want this file's source at run time).
    run = tf.autograph.experimental.do_not_convert(
        lambda x: [tf.cast(y, tf.float32) for y in tf.nest.flatten(model(x, training=False))])
    graph = tf.function(run, input_signature=[spec])
    return lambda batch: [y.numpy() for y in graph(tf.constant(batch))]


# --- the per-machine cache --------------------------------------------------------------------------------------

def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("onnxruntime", "onnxruntime-gpu", "openvino", "tensorflow-cpu", "tensorflow"):
        try:
            found.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            continue
    return ",".join(found)


def _cache_key(cpu: Cpu, net: _Net, candidate: tuple[str, str]) -> str:
    graph = net.descriptor + ("+labels" if net.labels else "")  # the head changes speed and the int8 graph
    return "|".join([cpu.label(), _versions(), f"q{QUANT_VERSION}", graph, net.weights_id, *candidate])


def _read_cache() -> dict:
    try:
        return json.loads((cache_dir() / "runtime-choice.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # absent or damaged: measure again


def _write_cache(cache: dict) -> None:
    path = cache_dir() / "runtime-choice.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_text(json.dumps(cache, indent=1), encoding="utf-8")
        partial.replace(path)
    except OSError as exc:  # a read-only cache costs a re-measurement next time, nothing else
        log.warning("cannot save the runtime measurement to %s: %s", path, exc)


@contextlib.contextmanager
def _root_logging_above(level: int) -> Iterator[None]:
    """Only records above `level` pass the root logger meanwhile (a library's advice stays off the terminal)."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(level + 1)
    try:
        yield
    finally:
        root.setLevel(before)
