"""VGG16 on an NVIDIA GPU through ONNX Runtime's CUDA execution provider (runtime "cuda"), and the CPU fallback.

The GPU tests run only where `onnxruntime-gpu` (the [gpu] extra) sees a working GPU; elsewhere they are
skipped with the reason. The fallback test runs where there is no GPU.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from bench.photos import photo_arrays
from core.model import Extractor, resolve_weights, to_model_pixels


def _gpu_missing() -> str | None:
    """Why the GPU tests cannot run here, or None when they can."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return f"onnxruntime {ort.__version__} has no CUDA execution provider (install the [gpu] extra)"
    from core.model import random_weights
    from core.runtime import _cuda

    if _cuda("gem", random_weights(0, "gem"), asked=False) is None:
        return "the CUDA execution provider is installed but could not start (no NVIDIA GPU or CUDA libraries)"
    return None


GPU_MISSING = _gpu_missing()
needs_gpu = pytest.mark.skipif(GPU_MISSING is not None, reason=GPU_MISSING or "")


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    from PIL import Image

    return np.stack([to_model_pixels(Image.fromarray(p)) for p in list(photo_arrays().values())[:8]])


@needs_gpu
def test_auto_runs_on_the_gpu_and_agrees_with_the_cpu(pixels):
    weights = resolve_weights("random", "gem")
    gpu = Extractor("gem", weights)
    described = gpu.describe()
    print(described)
    assert (described["runtime"], described["precision"]) == ("cuda", "fp32")
    assert described["device"].startswith("cuda:0")
    cpu = Extractor("gem", weights, runtime="onnxruntime", precision="fp32")
    # cuDNN may run convolutions in TF32 on Ampere and later GPUs: agreement, not equality.
    assert (np.sum(gpu.embed(pixels) * cpu.embed(pixels), axis=1) >= 0.999).all()


@needs_gpu
def test_the_gpu_takes_fc1_and_batches_like_the_cpu(pixels):
    gpu = Extractor("fc1", resolve_weights("random", "fc1"), batch_size=3, runtime="cuda")
    batched = gpu.embed(pixels[:4])
    single = np.concatenate([gpu.embed(p[None]) for p in pixels[:4]])
    assert batched.shape == (4, 4096) and (np.sum(batched * single, axis=1) >= 0.9999).all()


@pytest.mark.skipif(GPU_MISSING is None, reason="a GPU is present: the CPU fallback cannot happen here")
def test_asking_for_the_gpu_without_one_runs_on_the_cpu_with_one_log_line(caplog, monkeypatch, tmp_path):
    monkeypatch.setenv("IMAGE_SEARCH_CACHE_DIR", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="core.runtime"):
        extractor = Extractor("gem", resolve_weights("random", "gem"), runtime="cuda", precision="fp32")
    described = extractor.describe()
    assert described["runtime"] != "cuda" and described["device"].startswith("cpu: ")
    cuda_lines = [r for r in caplog.records if "cuda" in r.message]
    assert len(cuda_lines) == 1 and "running on the CPU" in cuda_lines[0].message
    print(cuda_lines[0].message)
