"""The labels pass: ImageNet labels for indexed images that have none yet (indexed before `labels` was on).

The indexer labels what it embeds while the setting is on (core/indexer.py); this pass catches up on the
rest. Each unlabelled image is decoded again (core.decode's worker processes) and run through the labelled
VGG16 (core.model.Extractor.embed_labelled: the descriptor is computed too but not stored, the index keeps its
own); labels are written per batch (core/store/annotations.py `set_labels`), so a cancelled pass keeps what it
wrote and the next one resumes with the images still unlabelled. A file that cannot be decoded is skipped with
its reason and stays unlabelled; it never costs another.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.decode import DecodePool
from core.images import ImageError
from core.model import Extractor
from core.paths import path_json
from core.scan import Cancel
from core.store.annotations import Annotations
from core.store.base import VectorStore

Progress = Callable[[int, int, str], None]  # (images done, images to label, the last path), after each batch


@dataclass
class LabelReport:
    """What a labels pass did. Paths are fs paths; `to_dict` gives the JSON form."""

    labelled: int = 0  # images that got their labels (maybe none above the confidence)
    already: int = 0  # images labelled before this pass
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): left unlabelled
    meaningful: bool = True  # False with random weights: the names are arbitrary (tests only)
    cancelled: bool = False
    elapsed_s: float = 0.0

    def summary(self) -> str:
        """The report in words, one line."""
        text = (f"{self.labelled} labelled, {self.already} already labelled, {len(self.skipped)} skipped "
                f"in {self.elapsed_s:.1f} s")
        if self.cancelled:
            text += " (cancelled)"
        if not self.meaningful:
            text += ". These labels are meaningless: the weights are random (tests only)"
        return text

    def to_dict(self) -> dict:
        """The JSON report (CLI `labels --json`, the API's job report)."""
        return {"labelled": self.labelled, "already": self.already,
                "skipped": [{**path_json(p), "reason": r} for p, r in self.skipped],
                "labels_meaningful": self.meaningful, "cancelled": self.cancelled,
                "elapsed_s": round(self.elapsed_s, 3)}


def label_unlabelled(store: VectorStore, annotations: Annotations, extractor: Extractor,
                     progress: Progress | None = None, cancel: Cancel | None = None,
                     decode_workers: int = 2) -> LabelReport:
    """Label every indexed image that was never labelled, in batches of `extractor.batch_size`.

    `extractor` must be built with labels (ValueError otherwise). `cancel` is checked between files; the pass
    then stops after committing the batches already labelled. Raises StoreError when the index or its side
    data fails."""
    if not extractor.labels:
        raise ValueError("the extractor was built without labels")
    started = time.monotonic()
    report = LabelReport(meaningful=extractor.labels_meaningful)
    records = {r.id: r for r in store.records()}
    todo = annotations.unlabelled(records)
    report.already = len(records) - len(todo)
    by_path = {records[i].path: i for i in todo}
    done, batch = 0, []

    def commit() -> None:
        nonlocal done, batch
        if not batch:
            return
        _, labels = extractor.embed_labelled(np.stack([pixels for _, _, pixels in batch]))
        annotations.set_labels({image_id: names for (image_id, _, _), names in zip(batch, labels, strict=True)})
        report.labelled += len(batch)
        done += len(batch)
        if progress is not None:
            progress(done + len(report.skipped), len(by_path), batch[-1][1])
        batch = []

    with DecodePool(decode_workers) as pool:
        for path, outcome in pool.imap(list(by_path), max_ahead=2 * extractor.batch_size):
            if cancel is not None and cancel.is_set():
                report.cancelled = True
                break
            if isinstance(outcome, ImageError):
                report.skipped.append((path, outcome.reason))
                continue
            batch.append((by_path[path], path, outcome.pixels))
            if len(batch) >= extractor.batch_size:
                commit()
        if not report.cancelled:
            commit()
    report.elapsed_s = time.monotonic() - started
    return report
