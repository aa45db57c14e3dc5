"""Decoding for the index: decode_file in this process, DecodePool in worker processes that may crash or hang."""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.decode import Decoded, DecodePool, content_hash, decode_file
from core.images import ImageError
from core.model import to_model_pixels
from tests.corpus import gradient, jpeg_bytes


def misbehaving_decode(path: str) -> Decoded:
    """decode_file, except for files named to crash the worker, hang it, or print to the C-level stderr."""
    name = os.path.basename(path)
    if name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("hang"):
        open(path + ".started", "w").close()  # tells a test the decode is in flight
        time.sleep(600)
    if name.startswith("slow"):
        time.sleep(1)
    if name.startswith("noisy"):
        os.write(2, b"TIFFReadDirectory: Warning, Unknown field with tag 50000 (0xc350) encountered.\n")
    return decode_file(path)


def timed_decode(path: str) -> Decoded:
    """Records when it started and ended on this file (beside it), taking 0.4 s; every file is refused."""
    started = time.time()
    time.sleep(0.4)
    with open(path + ".times", "w") as f:
        f.write(f"{started} {time.time()}")
    raise ImageError("timed")


def heavy_imports(path: str) -> Decoded:
    """Says, as its reason, which heavy libraries the worker process has imported."""
    loaded = [m for m in ("tensorflow", "onnxruntime", "openvino", "PySide6") if m in sys.modules]
    raise ImageError(",".join(loaded) or "none")


def dds_unimplemented() -> bytes:
    """A DDS texture whose pixel format Pillow does not implement: Pillow raises NotImplementedError."""
    header = struct.pack("<4sIIIIIII44s", b"DDS ", 124, 0x1007, 16, 16, 0, 0, 0, b"\0" * 44)
    pixel_format = struct.pack("<II4sIIIII", 32, 0x4, b"XYZW", 0, 0, 0, 0, 0)
    return header + pixel_format + struct.pack("<IIIII", 0x1000, 0, 0, 0, 0) + b"\0" * 256


@pytest.fixture
def photos(tmp_path):
    paths = []
    for i in range(6):
        path = tmp_path / f"photo{i}.jpg"
        path.write_bytes(jpeg_bytes(np.roll(gradient(400, 300), 40 * i, axis=1)))
        paths.append(str(path))
    return paths


def test_decode_file_gives_the_networks_input_and_the_files_identity(tmp_path):
    path = tmp_path / "p.jpg"
    data = jpeg_bytes(gradient(640, 480), quality=95)
    path.write_bytes(data)
    decoded = decode_file(str(path))
    assert decoded.pixels.shape == (224, 224, 3) and decoded.pixels.dtype == np.uint8
    assert (decoded.width, decoded.height, decoded.format) == (640, 480, "JPEG")
    assert decoded.size == len(data) and decoded.hash == hashlib.blake2b(data, digest_size=16).hexdigest()
    full = to_model_pixels(Image.open(path).convert("RGB"))
    assert np.abs(decoded.pixels.astype(int) - full).mean() < 3  # reduced early, the same picture
    assert decoded.warnings == ()


def test_content_hash_streams_and_says_why_it_cannot_read(tmp_path):
    path = tmp_path / "big.bin"
    data = os.urandom(3 * 2**20 + 17)
    path.write_bytes(data)
    assert content_hash(str(path)) == (len(data), hashlib.blake2b(data, digest_size=16).hexdigest())
    with pytest.raises(ImageError, match="cannot read"):
        content_hash(str(tmp_path / "missing.jpg"))
    with pytest.raises(ImageError, match="folder"):
        content_hash(str(tmp_path))
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(ImageError, match="not a regular file"):
        content_hash(str(tmp_path / "pipe.jpg"))


def test_not_implemented_in_a_decoder_is_that_files_reason(tmp_path):
    path = tmp_path / "texture.dds"
    path.write_bytes(dds_unimplemented())
    with pytest.raises(ImageError) as err:
        decode_file(str(path))
    assert err.value.reason.startswith("DDS: NotImplementedError")


def test_pool_results_in_order_with_reasons(tmp_path, photos):
    (tmp_path / "texture.dds").write_bytes(dds_unimplemented())
    (tmp_path / "notes.jpg").write_text("not an image")
    paths = [photos[0], str(tmp_path / "texture.dds"), photos[1], str(tmp_path / "notes.jpg"), photos[2],
             str(tmp_path / "missing.jpg"), *photos[3:]]
    with DecodePool(workers=2) as pool:
        results = list(pool.imap(paths, max_ahead=3))
    assert [p for p, _ in results] == paths
    outcomes = dict(results)
    for photo in photos:
        assert isinstance(outcomes[photo], Decoded)
        assert outcomes[photo].hash == decode_file(photo).hash
        assert np.array_equal(outcomes[photo].pixels, decode_file(photo).pixels)
    assert "NotImplementedError" in outcomes[str(tmp_path / "texture.dds")].reason
    assert outcomes[str(tmp_path / "notes.jpg")].reason == "not a recognised image format"
    assert "cannot read" in outcomes[str(tmp_path / "missing.jpg")].reason


def test_a_crash_or_a_hang_costs_only_that_file(tmp_path, photos):
    for name in ("crash.jpg", "hang.jpg", "crash2.jpg"):
        (tmp_path / name).write_bytes(jpeg_bytes(gradient()))
    paths = [photos[0], str(tmp_path / "crash.jpg"), photos[1], str(tmp_path / "hang.jpg"), photos[2],
             str(tmp_path / "crash2.jpg"), *photos[3:]]
    started = time.monotonic()
    with DecodePool(workers=2, timeout_s=3, decode=misbehaving_decode) as pool:
        results = list(pool.imap(paths, max_ahead=4))
        again = list(pool.imap(photos[:2]))  # the replaced workers serve the next run
    assert time.monotonic() - started < 60
    assert [p for p, _ in results] == paths
    outcomes = dict(results)
    assert all(isinstance(outcomes[p], Decoded) for p in photos)
    assert outcomes[str(tmp_path / "crash.jpg")].reason == "decoder crashed (killed by SIGSEGV)"
    assert outcomes[str(tmp_path / "crash2.jpg")].reason == "decoder crashed (killed by SIGSEGV)"
    assert outcomes[str(tmp_path / "hang.jpg")].reason == "decoding took longer than 3 s"
    assert [isinstance(o, Decoded) for _, o in again] == [True, True]


def test_the_decoders_stderr_becomes_that_files_warnings(tmp_path, photos, capfd):
    noisy = tmp_path / "noisy.jpg"
    noisy.write_bytes(jpeg_bytes(gradient()))
    with DecodePool(workers=1, decode=misbehaving_decode) as pool:
        outcomes = dict(pool.imap([photos[0], str(noisy), photos[1]]))
    assert outcomes[str(noisy)].warnings == (
        "TIFFReadDirectory: Warning, Unknown field with tag 50000 (0xc350) encountered.",)
    assert outcomes[photos[0]].warnings == () and outcomes[photos[1]].warnings == ()
    assert "TIFFReadDirectory" not in capfd.readouterr().err


def test_at_most_max_ahead_files_are_taken_in_flight(photos):
    taken = []

    def paths():
        for p in photos:
            taken.append(p)
            yield p

    with DecodePool(workers=2) as pool:
        results = pool.imap(paths(), max_ahead=2)
        next(results)
        assert len(taken) <= 3  # two in flight, one more taken once the first was handed out
        results.close()  # abandoned mid-run: the busy workers are replaced, the next run is not confused
        assert [p for p, _ in pool.imap(photos[:3])] == photos[:3]


def test_results_finishing_out_of_order_come_back_in_order(tmp_path, photos):
    slow = tmp_path / "slow.jpg"
    slow.write_bytes(jpeg_bytes(gradient()))
    paths = [str(slow), *photos, str(slow), photos[0]]
    with DecodePool(workers=2, decode=misbehaving_decode) as pool:
        results = list(pool.imap(paths, max_ahead=3))
    assert [p for p, _ in results] == paths
    assert all(isinstance(o, Decoded) for _, o in results)


def test_workers_start_without_the_network_runtimes(photos):
    with DecodePool(workers=1, decode=heavy_imports) as pool:
        [(_, outcome)] = pool.imap(photos[:1])
    assert outcome.reason == "none"


def test_cancel_ends_imap_within_a_second_while_a_decode_hangs(tmp_path, photos):
    hang = tmp_path / "hang.jpg"
    hang.write_bytes(jpeg_bytes(gradient()))
    cancel = threading.Event()
    with DecodePool(workers=2, decode=misbehaving_decode) as pool:
        results = pool.imap([photos[0], str(hang), photos[1]], cancel=cancel)
        assert next(results)[0] == photos[0]
        while not os.path.exists(str(hang) + ".started"):
            time.sleep(0.01)
        [hung] = [w.process for w in pool._workers if w.task is not None and w.task[1] == str(hang)]
        cancel.set()
        started = time.monotonic()
        rest = list(results)
        ended = time.monotonic() - started
        again = list(pool.imap(photos[2:4]))  # killed workers are started afresh for the next run
    assert ended < 5  # about CANCEL_POLL_S; loose bound on a loaded machine
    assert all(p != str(hang) for p, _ in rest) and not hung.is_alive()
    assert [isinstance(o, Decoded) for _, o in again] == [True, True]


def test_large_files_decode_one_at_a_time_while_small_ones_keep_the_other_worker_busy(tmp_path):
    from core.decode import LARGE_FILE_BYTES

    names = ["big1.png", "small1.jpg", "big2.tif", "small2.jpg", "big3.png", "raw.nef"]
    paths = []
    for name in names:
        path = tmp_path / name
        with open(path, "wb") as f:  # sparse: large by size, nothing written
            f.truncate(LARGE_FILE_BYTES if name.startswith(("big", "raw")) else 1000)
        paths.append(str(path))
    with DecodePool(workers=2, decode=timed_decode) as pool:
        results = list(pool.imap(paths))
    assert [p for p, _ in results] == paths  # still in input order
    spans = {os.path.basename(p): tuple(map(float, Path(p + ".times").read_text().split())) for p in paths}
    big = sorted(spans[n] for n in names if n.startswith("big"))
    assert all(earlier[1] <= later[0] for earlier, later in zip(big, big[1:], strict=False))  # never two at once
    assert any(spans[n][0] < spans["big1.png"][1] for n in ("small1.jpg", "raw.nef"))  # the other worker worked
