"""What the `labels` setting costs: VGG16 gem with and without the ImageNet classifier head, in one process.

Prints one JSON object. Both networks run on the same batches of the calibration photos, interleaved (so a
busy machine slows both alike); figures are medians over --repeats batches of --batch images:
- ms_per_image: forward time per image, without and with the head, their difference and ratio;
- rss_mb: the process's resident memory after building each network (the head's fc1/fc2/predictions weights are
  (25088x4096 + 4096x4096 + 4096x1000) float32 = 493 MB before the runtime's own copies).
Random weights (the head has the full layer shapes; speed does not depend on the values).

    python bench/labels.py [--runtime onnxruntime] [--precision fp32] [--batch 16] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_mb() -> float:
    """Resident memory now (Linux /proc), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    from core.model import Extractor, resolve_weights
    from core.runtime import calibration_batch, this_cpu

    weights = resolve_weights("random", "gem", labels=True)
    pixels = np.resize(calibration_batch(), (args.batch, 224, 224, 3))  # preprocessed photos, repeated to a batch
    rss = {"start": rss_mb()}
    plain = Extractor("gem", weights, args.batch, args.runtime, args.precision)
    rss["plain"] = rss_mb()
    labelled = Extractor("gem", weights, args.batch, args.runtime, args.precision, labels=True)
    rss["labelled"] = rss_mb()
    times: dict[str, list[float]] = {"plain": [], "labelled": []}
    for _ in range(args.repeats):
        for name, extractor in (("plain", plain), ("labelled", labelled)):
            start = time.perf_counter()
            extractor._net.run(pixels)
            times[name].append((time.perf_counter() - start) / args.batch * 1000)
    ms = {name: statistics.median(values) for name, values in times.items()}
    print(json.dumps({
        "cpu": this_cpu().label(), "load_avg": os.getloadavg(), "runtime": plain.describe()["runtime"],
        "precision": plain.describe()["precision"], "batch": args.batch, "repeats": args.repeats,
        "ms_per_image": {"plain": round(ms["plain"], 2), "labelled": round(ms["labelled"], 2),
                         "extra": round(ms["labelled"] - ms["plain"], 2),
                         "ratio": round(ms["labelled"] / ms["plain"], 3)},
        "rss_mb": {"plain_network": round(rss["plain"] - rss["start"]),
                   "labelled_network": round(rss["labelled"] - rss["plain"]),
                   "extra": round((rss["labelled"] - rss["plain"]) - (rss["plain"] - rss["start"]))},
    }, indent=1))


if __name__ == "__main__":
    main()
