"""Peak memory of indexing and of scanning, printed as one JSON object.

    python bench/memory.py [--images 5000] [--folder DIR] [--scan-files 200000]

- index: `image-search index` (default descriptor and runtime, random weights) on `--images` photos of mixed
  sizes (0.5 to 24 MP) and formats (JPEG, PNG, LZW TIFF, HEIC, WebP; bench.photos.write_mixed), or on the
  photos already in `--folder`. The run is a child process; a sampler reads VmHWM (the kernel's peak
  resident set, /proc/PID/status) of it and of every process below it (the decode workers) every
  SAMPLE_S seconds. `peak_rss_mb_total` adds each process's VmHWM: an upper bound on what the run held at
  once (issues 12 and 13 bound it at 2.5 GB). Each process is named by its command line.
- scan: core.scan.scan on a temporary tree of `--scan-files` empty files (100 per folder), in a child
  process that reports its own VmHWM and that of the interpreter before scanning (deleted afterwards).

The CPU and the load average (os.getloadavg) before and after are recorded: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_S = 0.2
FILES_PER_FOLDER = 100


def vm_hwm_mb(pid: int | str = "self") -> float | None:
    """VmHWM of a process in MiB (proc(5)), None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def descendants(pid: int) -> set[int]:
    """The processes below `pid`, from the parent pid field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def role(pid: int) -> str:
    """What a process below the run is, from its command line."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            words = cmdline.read().decode(errors="replace").split("\0")
    except OSError:
        return "gone"
    text = " ".join(words)
    if "resource_tracker" in text:
        return "multiprocessing resource tracker"
    if "multiprocessing.spawn" in text or "--multiprocessing-fork" in text:
        return "decode worker"
    if words[:3] == [sys.executable, "-m", "core"]:  # the CLI's command line: a fork, e.g. exec'ing a probe
        return "fork of main (counted, though its pages are shared copy-on-write)"
    return text[:80]


def measure_index(folder: Path, data: Path) -> dict:
    """Index `folder` with the CLI in a child process; per-process VmHWM sampled until it exits."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "core", "--data-dir", str(data), "--weights", "random", "index", "--json",
           str(folder)]
    started = time.monotonic()
    child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, float] = {}
    names: dict[int, str] = {}

    def sample() -> None:
        while child.poll() is None:
            for pid in {child.pid, *descendants(child.pid)}:
                hwm = vm_hwm_mb(pid)
                if hwm is not None:
                    peaks[pid] = max(peaks.get(pid, 0.0), hwm)
                    names.setdefault(pid, "main" if pid == child.pid else role(pid))
            time.sleep(SAMPLE_S)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, err = child.communicate()
    sampler.join()
    elapsed = time.monotonic() - started
    if child.returncode != 0:
        sys.exit(f"indexing failed ({child.returncode}):\n{err[-4000:]}")
    report = json.loads(out)
    per_process = [{"pid": pid, "role": names[pid], "vm_hwm_mb": round(mb, 1)} for pid, mb in sorted(peaks.items())]
    return {
        "peak_rss_mb_total": round(sum(peaks.values()), 1),
        "peak_rss_mb_main": round(peaks.get(child.pid, 0.0), 1),
        "per_process": per_process,
        "indexed": report["indexed"], "skipped": len(report["skipped"]), "warnings": len(report["warnings"]),
        "elapsed_s": round(elapsed, 1), "images_per_s": round(report["indexed"] / elapsed, 2),
    }


SCAN_CHILD = """
import json, sys, time
from bench.memory import vm_hwm_mb
from core.scan import scan
before = vm_hwm_mb()
t = time.monotonic()
found = scan([sys.argv[1]])
print(json.dumps({"files_found": len(found.files), "scan_s": round(time.monotonic() - t, 1),
                  "peak_rss_mb": round(vm_hwm_mb(), 1), "rss_mb_before_scan": round(before, 1)}))
"""


def measure_scan(files: int) -> dict:
    """Scan a fresh tree of `files` empty .jpg files in a child process; its VmHWM."""
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        for n in range(files):
            folder = Path(tmp, f"{n // (FILES_PER_FOLDER * 100):03d}", f"{n // FILES_PER_FOLDER:05d}")
            if n % FILES_PER_FOLDER == 0:
                folder.mkdir(parents=True)
            (folder / f"IMG_{n:07d}.jpg").touch()
        out = subprocess.run([sys.executable, "-c", SCAN_CHILD, tmp], cwd=ROOT, check=True, capture_output=True,
                             text=True)
    return {"files": files, **json.loads(out.stdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="photos to write and index (default 5000)")
    parser.add_argument("--folder", type=Path, help="index the photos in this folder instead of writing some")
    parser.add_argument("--scan-files", type=int, default=200_000, help="files in the scanned tree (0: skip)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from core.runtime import this_cpu

    cpu = f"{this_cpu().model} ({os.cpu_count()} CPUs)"
    result: dict = {"cpu": cpu, "load_before": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        folder = args.folder
        if folder is None:
            from bench.photos import write_mixed

            folder = Path(tmp, "photos")
            write_mixed(folder, args.images)
        files = [p for p in folder.rglob("*") if p.is_file()]
        result["photos"] = {"files": len(files), "bytes": sum(p.stat().st_size for p in files),
                            "kinds": sorted({p.suffix.lower() for p in files})}
        result["index"] = measure_index(folder, Path(tmp, "data"))
        shutil.rmtree(Path(tmp, "data"), ignore_errors=True)
    if args.scan_files:
        result["scan"] = measure_scan(args.scan_files)
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
