"""Native libraries that must load together in one process, in any order the code may import them."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("second", ["onnxruntime", "openvino", "core.model"])
def test_the_embedded_store_then_a_runtime_load_in_one_process(second):
    # usearch (the embedded store's HNSW graph) used to make a later `import onnxruntime` segfault.
    code = f"import core.store.embedded, {second}; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
