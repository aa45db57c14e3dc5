"""Decoding files for the index, in this process or in a pool of worker processes.

Native decoders (libjpeg, libpng, libtiff, libheif, libraw) can crash, hang, or write to the C-level stderr.
In a worker process each of these costs only the file being decoded: a crash or a time-out becomes that
file's ImageError and the worker is replaced, and what was written to fd 2 becomes that file's warnings.
Workers are started with "spawn" (never fork a parent that may hold TensorFlow or ONNX Runtime threads) and
import only Pillow, its plugins, rawpy and NumPy.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import signal
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait

import numpy as np
from PIL import Image

from core.formats import RAW_EXTENSIONS
from core.images import ImageError, load_image, open_regular_file
from core.model import INPUT_SIZE, to_model_pixels
from core.scan import Cancel

CHUNK = 2**20  # bytes read at a time while hashing
MAX_STDERR = 2000  # characters of a decoder's stderr kept per file
CANCEL_POLL_S = 0.05  # how often a wait for the workers looks at the cancel flag
# Files at least this large decode one at a time (the others keep the remaining workers busy): a photo near
# Pillow's pixel limit (179 MP) needs ~0.5 GB as RGB and two to three times that while decoding and converting
# colour, so two at once could pass the 2.5 GB bound of a whole run (issue 12). Compressed photos of 24 MP or
# less stay below it (JPEG ~5-15 MB, HEIC ~3-8 MB); RAW files are exempt: their embedded preview or half-size
# demosaic is small whatever the file size.
LARGE_FILE_BYTES = 32 * 2**20


@dataclass(frozen=True)
class Decoded:
    """One file decoded for the index (decode_file): the network's input pixels and the file's facts."""
    pixels: np.ndarray  # uint8 (224, 224, 3), sRGB RGB: the network's input (core.model.to_model_pixels)
    width: int  # the full image's oriented size in pixels
    height: int
    format: str  # "JPEG", "MPO", "PNG", "HEIF", "AVIF", "DNG", "NEF", ...
    size: int  # bytes of the file
    hash: str  # blake2b, digest_size=16, hex, of the file's bytes
    warnings: tuple[str, ...]  # tolerated problems and the decoders' own warnings, one line each


def content_hash(path: str) -> tuple[int, str]:
    """(size in bytes, blake2b-128 hex digest) of the file's bytes, read 1 MiB at a time.

    Raises ImageError when the file cannot be read (missing, permission denied, a folder, not a regular file)."""
    digest = hashlib.blake2b(digest_size=16)
    size = 0
    with open_regular_file(path) as fp:
        try:
            while chunk := fp.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        except OSError as exc:
            raise ImageError(f"cannot read file: {exc.strerror or exc}") from None
    return size, digest.hexdigest()


def decode_file(path: str) -> Decoded:
    """Hash and decode one file in this process into the network's input; raises ImageError(reason).

    The file is read twice (decode, then hash from the page cache) so that a large file is never held whole;
    a file that is not an image is never hashed."""
    loaded = load_image(path, draft=INPUT_SIZE)
    size, digest = content_hash(path)
    return Decoded(to_model_pixels(loaded.image), loaded.width, loaded.height, loaded.format or "image", size,
                   digest, loaded.warnings)


class DecodePool:
    """Worker processes decoding files; a crash or hang costs only that file.

    `workers`: processes decoding at once (each holds at most one decoded image: memory is bounded by this);
    `timeout_s`: seconds one file may take once its worker is ready. `decode`: the function run per file, a
    module-level one (it is pickled by name); tests pass one that crashes or hangs on purpose.
    """

    def __init__(self, workers: int = 2, timeout_s: float = 120.0, *,
                 decode: Callable[[str], Decoded] = decode_file):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.timeout_s = timeout_s
        self._decode = decode
        self._context = multiprocessing.get_context("spawn")
        self._workers = [_Worker(self._context, decode) for _ in range(workers)]

    def imap(self, paths: Iterable[str], max_ahead: int = 32,
             cancel: Cancel | None = None) -> Iterator[tuple[str, Decoded | ImageError]]:
        """Results in input order, at most `max_ahead` files in flight; a worker that crashes (segfault) or
        exceeds timeout_s gives that file ImageError("decoder crashed ..."/"decoding took longer than ...")
        and is replaced; the decoder's messages on the C-level stderr (fd 2, e.g. libtiff) are captured per
        file into its warnings, not printed. Files of LARGE_FILE_BYTES or more (not RAW) decode one at a time.

        When `cancel` is set the iteration ends within about CANCEL_POLL_S seconds, even while a decode is
        in flight: the busy workers are killed (they hold nothing but the file being decoded) and started
        afresh by the next imap. The same happens when the caller stops iterating early."""
        for worker in self._workers:
            if worker.process is None:
                worker.start()
        source = iter(paths)
        waiting: list[tuple[int, str, bool]] = []  # (index, path, is_large) taken, not yet sent to a worker
        done: dict[int, tuple[str, Decoded | ImageError]] = {}
        taken = yielded = 0
        exhausted = False
        try:
            while True:
                while not exhausted and taken - yielded < max(1, max_ahead):
                    try:
                        path = next(source)
                        waiting.append((taken, path, is_large(path)))  # one stat per file
                    except StopIteration:
                        exhausted = True
                    else:
                        taken += 1
                for worker in self._workers:
                    if worker.ready and worker.task is None and waiting:
                        large_busy = any(w.task is not None and w.large for w in self._workers)
                        pick = next((n for n, (_, _, large) in enumerate(waiting) if not (large_busy and large)), None)
                        if pick is not None:
                            worker.send(*waiting.pop(pick), self.timeout_s)
                if yielded in done:
                    yield done.pop(yielded)
                    yielded += 1
                    continue  # take the next path in its place first
                if exhausted and yielded == taken:
                    return
                if cancel is not None and cancel.is_set():
                    return
                for index, path, outcome in self._collect(None if cancel is None else CANCEL_POLL_S):
                    done[index] = (path, outcome)
        finally:
            for worker in self._workers:  # abandoned mid-file: its late result must not reach the next imap
                if worker.task is not None:
                    worker.stop()

    def _collect(self, poll_s: float | None) -> list[tuple[int, str, Decoded | ImageError]]:
        """Wait until some worker finishes, crashes, times out or becomes ready, or `poll_s` passes; what
        finished."""
        now = time.monotonic()
        deadlines = [w.deadline for w in self._workers if w.task is not None]
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        if poll_s is not None:
            timeout = poll_s if timeout is None else min(timeout, poll_s)
        handles = [h for w in self._workers for h in (w.conn, w.process.sentinel)]
        ready = set(wait(handles, timeout))
        finished = []
        for worker in self._workers:
            if worker.conn in ready or worker.process.sentinel in ready:
                outcome = worker.receive()
            elif worker.task is not None and time.monotonic() >= worker.deadline:
                outcome = (*worker.task, ImageError(f"decoding took longer than {self.timeout_s:g} s"))
                worker.restart()
            else:
                continue
            if outcome is not None:
                finished.append(outcome)
        return finished

    def close(self) -> None:
        """Stop the workers (a busy or still starting one is killed)."""
        for worker in self._workers:
            if worker.process is not None:
                worker.stop()

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class _Worker:
    """One worker process, its pipe, and the file it is decoding."""

    def __init__(self, context, decode: Callable[[str], Decoded]):
        self._context = context
        self._decode = decode
        self.task: tuple[int, str] | None = None
        self.large = False  # the task is a file of LARGE_FILE_BYTES or more
        self.deadline = 0.0
        self.process = None
        self.start()

    def start(self) -> None:
        self.conn, child = self._context.Pipe()
        self.process = self._context.Process(target=_serve, args=(child, self._decode), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.task = None

    def send(self, index: int, path: str, large: bool, timeout_s: float) -> None:
        self.task, self.large = (index, path), large
        self.deadline = time.monotonic() + timeout_s
        self.conn.send(path)

    def receive(self) -> tuple[int, str, Decoded | ImageError] | None:
        """The finished task's outcome, or None when the message was the worker saying it is ready. A worker
        that died gives its task a reason and is replaced."""
        try:
            message = self.conn.recv() if self.conn.poll() else None
        except (EOFError, OSError):
            message = None
        if message is not None and not self.ready:  # the first message: started and waiting
            self.ready = True
            return None
        if message is None:  # the pipe closed or nothing came: the process died
            self.process.join(5)
            reason = _exit(self.process)
            if not self.ready:
                raise RuntimeError(f"a decode worker could not start ({reason})")
            task = self.task
            self.restart()
            return None if task is None else (*task, ImageError(f"decoder crashed ({reason})"))
        index, path = self.task
        self.task = None
        return index, path, message

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        """Ends the process: an idle one is asked to exit, a busy or still starting one is killed at once (it
        holds nothing but the file being decoded, and a hung decoder would not answer)."""
        if self.process.is_alive() and self.ready and self.task is None:
            with contextlib.suppress(OSError):
                self.conn.send(None)  # asks it to exit
            self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()
        self.process = None
        self.task = None


def is_large(path: str) -> bool:
    """Whether a file is decoded alone: LARGE_FILE_BYTES or more and not camera RAW (unreadable: False)."""
    if os.path.splitext(path)[1].lower() in RAW_EXTENSIONS:
        return False
    try:
        return os.stat(path).st_size >= LARGE_FILE_BYTES
    except OSError:
        return False


def _exit(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _serve(conn: Connection, decode: Callable[[str], Decoded]) -> None:
    """A worker's loop: paths in, Decoded or ImageError out, until None or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    warnings.simplefilter("always")  # every file's warnings reach its report, not only each kind's first
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # 89-179 MP photos are legitimate
    # fd 2 goes to a file: what C libraries print there during one decode becomes that file's warnings.
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        conn.send("ready")
        while True:
            try:
                path = conn.recv()
            except (EOFError, OSError):
                return
            if path is None:
                return
            captured.seek(0)
            captured.truncate()
            conn.send(_decode_one(decode, path, captured))


def _decode_one(decode: Callable[[str], Decoded], path: str, captured) -> Decoded | ImageError:
    try:
        outcome: Decoded | ImageError = decode(path)
    except ImageError as exc:
        outcome = exc
    except Exception as exc:  # decode_file turns every exception into ImageError; another `decode` may not
        outcome = ImageError(f"cannot decode: {type(exc).__name__}: {exc}")
    captured.seek(0)
    text = captured.read(MAX_STDERR).decode(errors="replace")
    printed = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    if printed and isinstance(outcome, Decoded):
        outcome = replace(outcome, warnings=outcome.warnings + tuple(dict.fromkeys(printed)))
    return outcome
