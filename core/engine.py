"""The one engine every front end (CLI, HTTP API, desktop) holds: an index plus a lazily built VGG16."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from core import __version__, file_actions
from core.config import Settings
from core.duplicates import VARIANTS, Group, Progress, find_groups, search_with_variants, variant_pairs
from core.errors import CONFLICT, NOT_FOUND, UserError
from core.file_actions import Plan, Result
from core.images import ImageError, load_image
from core.indexer import Cancel, IndexProgress, IndexReport, run_index, scanned_roots
from core.labels import LabelReport, label_unlabelled
from core.model import (
    INPUT_SIZE,
    Extractor,
    resolve_weights,
    to_model_pixels,
)
from core.paths import display_path, is_text
from core.scan import is_under
from core.store import (
    Hit,
    IdentityMismatch,
    ImageRecord,
    ModelIdentity,
    SearchFilter,
    VectorStore,
    open_store,
)
from core.store.annotations import Annotation, Annotations, PhotoFilter, annotations_for, matches, search_words
from core.store.base import mismatch_message
from core.store.decisions import decisions_for

SCAN_STATE_FILE = "scan-state.json"  # each root's device and mount points at its last scan (core/indexer.py)


class NotFound(UserError, LookupError):
    """An id or path that is not in the index."""

    kind = NOT_FOUND
    title = "Not Found"



class LabelsOff(UserError):
    """Labels were asked for while the `labels` setting is off (HTTP 409: this server's settings rule it out)."""

    kind = CONFLICT
    title = "Labels are off"

class Engine:
    """Thread-safe: the API thread and the desktop worker may share one Engine."""

    def __init__(self, settings: Settings, store: VectorStore | None = None, extractor: Extractor | None = None):
        self.settings = settings
        self.store = store if store is not None else open_store(settings)
        stored = self.store.identity
        # An existing index keeps its descriptor unless one was asked for explicitly (then it must match).
        descriptor = settings.descriptor or (stored.descriptor if stored else "gem")
        self.weights = resolve_weights(settings.weights, descriptor, settings.labels)
        self.identity: ModelIdentity = self.weights.identity(descriptor)
        if stored is not None and stored != self.identity:
            raise IdentityMismatch(mismatch_message(stored, self.identity, self.store.location()))
        if extractor is not None and extractor.identity != self.identity:
            raise IdentityMismatch(f"extractor {extractor.identity.label()} != index {self.identity.label()}")
        self._extractor = extractor  # built on first use when not given (tests share one)
        self._extractor_lock = threading.Lock()
        self._annotations: Annotations | None = None  # opened on first use (core/store/annotations.py)
        self._annotations_lock = threading.Lock()

    # -- the model --------------------------------------------------------------------------------
    @property
    def model_loaded(self) -> bool:
        """Whether the VGG16 extractor has been built yet (extractor() builds it)."""
        return self._extractor is not None

    def extractor(self) -> Extractor:
        """The VGG16 extractor, built on first use (seconds: imports TensorFlow, loads weights)."""
        with self._extractor_lock:
            if self._extractor is None:
                self._extractor = Extractor(self.identity.descriptor, self.weights, self.settings.batch_size,
                                            self.settings.runtime, self.settings.precision, self.settings.labels)
            return self._extractor

    def embed(self, source: str | Path | bytes) -> np.ndarray:
        """The unit descriptor of one image file or buffer; ImageError if it is not a usable image."""
        loaded = load_image(source, draft=INPUT_SIZE)
        return self.extractor().embed(to_model_pixels(loaded.image)[None])[0]

    # -- searching --------------------------------------------------------------------------------
    def search(self, source: str | Path | bytes, k: int = 10, filters: SearchFilter | None = None,
               photo: PhotoFilter | None = None, *, variants: bool = False) -> list[Hit]:
        """kNN by an image file or buffer (search_vector). variants: also match its mirrored and rotated
        copies (core.duplicates.search_with_variants: 5 embeddings and kNN searches); a hit found through a
        transform is a core.duplicates.VariantHit. Raises ImageError, StoreError."""
        if variants:
            return self._search_variants(load_image(source, draft=INPUT_SIZE).image, None, k, filters, photo)
        return self.search_vector(self.embed(source), k, filters, photo)

    def search_vector(self, vector: np.ndarray, k: int = 10, filters: SearchFilter | None = None,
                      photo: PhotoFilter | None = None) -> list[Hit]:
        """kNN by `vector` (float32 (dims,), unit). The words of `filters.text` may match a file name, a
        folder, a tag or the camera; `photo` restricts the date taken and camera. Both act inside the kNN
        (through SearchFilter.ids), so k hits come back whenever k images pass. Raises StoreError."""
        return self._knn(vector, k, filters or SearchFilter(), photo or PhotoFilter())

    def similar(self, ref: str, k: int = 10, filters: SearchFilter | None = None,
                photo: PhotoFilter | None = None, *, variants: bool = False) -> list[Hit]:
        """Refine: search from an indexed image (id or path) by its stored vector; nothing is re-extracted.
        variants: also match its mirrored and rotated copies, which decodes its file and embeds the 4
        transforms (ImageError when the file no longer decodes)."""
        record = self.resolve(ref)
        vector = self.store.vector(record.id)
        if vector is None:
            raise NotFound(f"no vector stored for {ref}")
        if variants:
            return self._search_variants(load_image(record.path, draft=INPUT_SIZE).image, vector, k, filters, photo)
        return self.search_vector(vector, k, filters, photo)

    def _search_variants(self, image: Image.Image, vector: np.ndarray | None, k: int, filters: SearchFilter | None,
                         photo: PhotoFilter | None) -> list[Hit]:
        """The image (its `vector` when known, else embedded here) and its VARIANTS, embedded in one batch."""
        shown = [image.transpose(t) for t in VARIANTS.values()] + ([image] if vector is None else [])
        embedded = self._embed_images(shown)
        queries = [(None, embedded[-1] if vector is None else vector),
                   *zip(VARIANTS, embedded[:len(VARIANTS)], strict=True)]
        return search_with_variants(lambda v: self.search_vector(v, k, filters, photo), queries, k)

    def resolve(self, ref: str) -> ImageRecord:
        """The record of an indexed image, by id or by any of its paths.

        `ref`: an image id, or a path as the OS gives it (an fs path: a str with surrogates for bytes that
        are not UTF-8, as argv carries them), relative or with `~`, through symlinks or not. Raises
        NotFound when no record matches."""
        record = self.store.get(ref) if is_text(ref) and os.sep not in ref else None
        if record is None and ref:
            spelled = os.path.abspath(os.path.expanduser(ref))
            for path in dict.fromkeys((os.path.realpath(spelled), spelled)):
                if (record := self.store.get_by_path(path)) is not None:
                    break
        if record is None:
            raise NotFound(f"not in the index: {display_path(ref)}")
        return record

    # -- duplicates -------------------------------------------------------------------------------
    def duplicate_groups(
        self,
        threshold: float = 0.95,
        *,
        reference_folders: list[str] | tuple[str, ...] | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        variants: bool = False,
    ) -> list[Group]:
        """Groups of duplicate images with their keepers, largest first: core.duplicates.find_groups through the
        store's batched kNN (never N x N), with the "not duplicates" decisions applied.

        threshold: cosine similarity in [-1, 1]. reference_folders: folders (any spelling: relative, `~`)
        whose images are kept first and never acted on; None takes the `reference_folders` setting. Keeper
        rules: the `keeper_rules` setting. progress(done, total): images queried so far. cancel: checked
        between batches. variants: also match mirrored and 90/180/270-degree rotated copies (a second pass
        that decodes and embeds every indexed image 4 more times: core.duplicates.variant_pairs).
        Raises core.duplicates.Cancelled, StoreError."""
        folders = self.settings.reference_folder_list() if reference_folders is None else tuple(
            os.path.abspath(os.path.expanduser(os.fspath(f))) for f in reference_folders)
        matches = variant_pairs(self.store, self._decoded_images(), self._embed_images, threshold,
                                cancel=cancel) if variants else ()
        decisions = decisions_for(self.store)
        try:
            return find_groups(self.store, threshold, reference_folders=folders,
                               keeper_rules=self.settings.keeper_rule_list(), progress=progress, cancel=cancel,
                               decisions=decisions, variant_matches=matches)
        finally:
            decisions.close()

    def plan_duplicates(
        self,
        groups: list[Group],
        *,
        kinds: tuple[str, ...] | list[str] = ("exact", "near-duplicate"),
        action: str = "trash",
        move_to: str | None = None,
        marks: list[str] | set[str] | None = None,
    ) -> Plan:
        """What acting on `groups` would do (nothing is touched): core.file_actions.plan. The members other
        than the keeper whose kind is in `kinds`, or the images `marks` (ids) when given; never a member in a
        reference folder. action: "trash" or "move" (into `move_to`, keeping paths relative to the files'
        common folder). Raises ValueError (unknown action, no destination, a group with every copy marked)."""
        return file_actions.plan(groups, kinds, action, move_to, marks=marks)

    def act_on_duplicates(self, plan: Plan, progress: Progress | None = None,
                          cancel: threading.Event | None = None) -> Result:
        """Carry out `plan` file by file (core.file_actions.execute): a file changed since the scan is
        skipped with the reason, the index is updated after each file, the journal is kept in
        `settings.data_dir`. progress(done, planned) in images. Raises StoreError, OSError (the journal)."""
        return file_actions.execute(plan, self.store, self.settings.data_dir, progress=progress, cancel=cancel)

    def undo_last_action(self) -> Result:
        """Undo the last action on duplicates not yet undone (core.file_actions.undo_last): moved files go
        back, trashed ones come back from the Linux trash; the index gets them back. An empty Result when
        there is nothing to undo. Raises StoreError, OSError (the journal)."""
        return file_actions.undo_last(self.settings.data_dir, self.store)

    def mark_not_duplicates(self, ids: list[str] | set[str] | tuple[str, ...]) -> int:
        """Remember that the images `ids` (a pair or a whole group) are not duplicates of each other: later
        duplicate_groups never pair them directly. Durable on return. Returns the number of pairs among them.
        Raises StoreError."""
        decisions = decisions_for(self.store)
        try:
            return decisions.mark_not_duplicates(ids)
        finally:
            decisions.close()

    def reset_decisions(self) -> None:
        """Forget every "not duplicates" decision of this index. Raises StoreError."""
        decisions = decisions_for(self.store)
        try:
            decisions.reset()
        finally:
            decisions.close()

    def _decoded_images(self) -> Iterator[tuple[str, Image.Image]]:
        """(id, RGB image decoded at model size) of every indexed image whose file still decodes; one at a
        time, so the variant pass holds one batch. A file that no longer decodes is left out of that pass."""
        for record in self.store.records():
            try:
                yield record.id, load_image(record.path, draft=INPUT_SIZE).image
            except (ImageError, OSError):
                continue

    def _embed_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.extractor().embed(np.stack([to_model_pixels(image) for image in images]))

    # -- indexing ---------------------------------------------------------------------------------
    def index(
        self,
        roots: list[str | Path],
        progress: Callable[[IndexProgress], None] | None = None,
        cancel: Cancel | None = None,
        prune_missing: bool = False,
    ) -> IndexReport:
        """Bring the index up to date with `roots` (folders or files; fs paths). See core/indexer.py for
        the matching and the rules that keep missing images; `prune_missing` forgets them. The roots'
        devices and mount points at the last scan are kept in `<data_dir>/scan-state.json`."""
        return run_index(
            self.store, self.identity, self.extractor, [os.fspath(r) for r in roots], progress, cancel,
            self.settings.batch_size, prune_missing=prune_missing, exclude=self.settings.exclude_patterns(),
            follow_external_symlinks=self.settings.follow_external_symlinks,
            state_file=Path(self.settings.data_dir) / SCAN_STATE_FILE, annotations=self.annotations(),
        )

    def indexed_roots(self) -> list[str]:
        """The folders indexed into this index from this machine by any front end (CLI, HTTP API, desktop) that
        it still holds images under: real fs paths as scanned, sorted. Read from the scan state that `index`
        keeps in `<data_dir>/scan-state.json` under the store's location, then one `records(under=root)` probe
        per root (so a folder forgotten with `remove_folder` drops out); a query per root, so call it off the
        GUI thread. Raises StoreError when the index cannot be read."""
        roots = scanned_roots(Path(self.settings.data_dir) / SCAN_STATE_FILE, self.store.location())
        return [root for root in roots if next(iter(self.store.records(under=root)), None) is not None]

    def label_images(self, progress: Callable[[int, int, str], None] | None = None,
                     cancel: Cancel | None = None) -> LabelReport:
        """ImageNet labels for every indexed image never labelled (indexed before the `labels` setting was
        on): core.labels.label_unlabelled. progress(done, total, path) after each batch; `cancel` stops it at
        the next file, keeping what was labelled. Raises LabelsOff when the setting is off, WeightsError
        when the full weights file cannot be had, StoreError."""
        self.require_labels()
        return label_unlabelled(self.store, self.annotations(), self.extractor(), progress, cancel)

    def require_labels(self) -> None:
        """Raise LabelsOff, saying how to turn it on, when the `labels` setting is off."""
        if not self.settings.labels:
            raise LabelsOff("labels are off: turn on the labels setting first (--labels true, "
                              "IMAGE_SEARCH_LABELS=true or Settings); it needs the full 528 MB ImageNet weights file")

    def remove_folder(self, folder: str | Path) -> int:
        """Forget every image under `folder` (any path: an fs path, relative, with `~`, through symlinks);
        the files stay on disk. An image also known by a path elsewhere (a hard link) keeps that path.
        Returns how many images were forgotten."""
        spelled = os.path.abspath(os.path.expanduser(os.fspath(folder)))
        folders = list(dict.fromkeys((os.path.realpath(spelled), spelled)))
        gone, kept = set(), {}
        for under in folders:
            for record in self.store.records(under=under):
                paths = tuple(p for p in record.paths if not any(is_under(p, f) for f in folders))
                if paths:
                    kept[record.id] = replace(record, paths=paths)
                else:
                    gone.add(record.id)
        if kept:
            self.store.update(list(kept.values()))
        if gone:
            self.store.delete(gone)
            self.annotations().forget(gone)
        if kept or gone:
            self.store.finish()
        return len(gone)

    # -- about ------------------------------------------------------------------------------------
    def info(self) -> dict:
        """About the index and model, for `info`, GET /api/health and the About box: backend, count, model,
        model_label, weights, location, version, runtime (Extractor.describe(), None until the model is built),
        labels and labels_meaningful."""
        return {
            "backend": self.store.backend,
            "count": self.store.count(),
            "model": self.identity.to_dict(),
            "model_label": self.identity.label(),
            "weights": self.settings.weights,
            "location": self.store.location(),
            "version": __version__,
            # What runs the network, once it is built (building it only to say so would cost seconds).
            "runtime": self._extractor.describe() if self._extractor is not None else None,
            "labels": self.settings.labels,
            "labels_meaningful": self.settings.labels and self.weights.labels_meaningful,
        }

    # -- tags, photo metadata, words ---------------------------------------------------------------
    def annotations(self) -> Annotations:
        """The tags and photo metadata kept beside the index (core/store/annotations.py), opened once."""
        with self._annotations_lock:
            if self._annotations is None:
                self._annotations = annotations_for(self.store)
            return self._annotations

    def annotations_of(self, ids) -> dict[str, Annotation]:
        """Annotations by image id (for the `tags`, `taken` and `camera` of search results)."""
        return self.annotations().get_many(ids)

    def tags(self, ref: str) -> list[str]:
        """The tags of an indexed image (id or path); NotFound when it is not indexed."""
        return self.annotations().tags(self.resolve(ref).id)

    def set_tags(self, ref: str, tags: list[str]) -> list[str]:
        """Replace the tags of an indexed image; returns them as stored (trimmed, one per folded spelling).
        Raises NotFound, InvalidTag (a comma or control character; nothing written), StoreError."""
        record = self.resolve(ref)
        self.annotations().put_records([record], {})  # its names now, for words-only search
        return self.annotations().set_tags(record.id, tags)

    def change_tags(self, refs: list[str], add: list[str], remove: list[str]) -> dict[str, list[str]]:
        """Add and remove tags on many images (ids or paths; all are resolved before anything is
        written). Returns each image's tags by id. Raises NotFound, InvalidTag, StoreError."""
        records = {r.id: r for r in (self.resolve(ref) for ref in refs)}
        annotations = self.annotations()
        annotations.put_records(list(records.values()), {})
        if add:
            annotations.add_tags(records, add)
        if remove:
            annotations.remove_tags(records, remove)
        return {i: list(a.tags) for i, a in annotations.get_many(records).items()}

    def tag_counts(self) -> dict[str, int]:
        """Every tag with how many images carry it, most used first."""
        return dict(sorted(self.annotations().tag_counts().items(), key=lambda kv: (-kv[1], kv[0].casefold())))

    def search_words(self, text: str | None, k: int = 50, photo: PhotoFilter | None = None) -> list[ImageRecord]:
        """Images matching every word of `text` (in a name, folder, tag or the camera, core.paths rule) and
        `photo`, newest first by date taken (undated last); at most k. Candidates come from the
        annotations, each checked against its current record. Raises StoreError."""
        return search_words(self.store, self.annotations(), text, k, photo or PhotoFilter())

    def _knn(self, vector: np.ndarray, k: int, filters: SearchFilter, photo: PhotoFilter) -> list[Hit]:
        words = filters.words()
        if not words and not photo.active():
            return self.store.knn(vector, k, filters)
        annotations, camera = self.annotations(), photo.camera_words()
        plain = filters
        if photo.active():  # the date and camera through the ids, names and folders by the store's own filter
            allowed = annotations.matching_ids(None, photo.after, photo.before, camera)
            plain = replace(filters, ids=frozenset(allowed if filters.ids is None else allowed & filters.ids))
        hits = self.store.knn(vector, k, plain) if plain.ids is None or plain.ids else []
        if words:
            # Images a word finds through a tag or the camera (maybe with other words in their names): their
            # candidates come from the annotations, checked on the current records.
            extra = annotations.matching_ids(words, photo.after, photo.before, camera)
            if filters.ids is not None:
                extra &= filters.ids
            extra -= {h.record.id for h in hits}
            if extra:
                more = self.store.knn(vector, k, replace(filters, text=None, ids=frozenset(extra)))
                notes = annotations.get_many(h.record.id for h in more)
                hits += [h for h in more if matches(h.record, notes.get(h.record.id), words)]
        return sorted(hits, key=lambda h: -h.score)[:k]

    def close(self) -> None:
        """Close the annotations store, if opened, and the index store."""
        if self._annotations is not None:
            self._annotations.close()
        self.store.close()

