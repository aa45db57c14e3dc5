"""Duplicate groups: which images are copies of each other, which copy to keep, and why.

Grouping goes through the store's batched kNN (`VectorStore.knn_many`): every image's vector is a query
for its `k` nearest neighbours at or above the threshold, a batch at a time, and the pairs found are joined
by union-find (connected components). Memory is O(images) for ids and hashes plus one batch of hits; no
N×N matrix is ever built. Byte-identical copies (same content hash) are joined whatever their vectors.
Hard links are one record with several paths (core.store.base.ImageRecord), so they never pair.

Each group has a keeper chosen by ordered rules, and each other member a kind relative to the keeper:
- `exact`: the same bytes (equal content hash, blake2b-128, and size);
- `near-duplicate`: the same picture at another size or encoding: cosine similarity to the keeper
  >= NEAR_DUPLICATE_SCORE and the same aspect ratio within ASPECT_TOLERANCE;
- `similar`: in the group through similarity >= threshold (possibly through another member, so its own
  score to the keeper can be lower).
A group's kind is its loosest member kind (exact < near-duplicate < similar).

Exact copies inside a group: a group can hold a set of byte-identical files that are not the keeper's bytes
(keeper K, a similar shot A, and A' a copy of A). Like dupeGuru and Czkawka, whose byte-identical matches are
always "100 %"/"same hash" and safe to remove, the rule is: the members with the same bytes form an exact
set; the set's best member by the same keeper rules (its lead) takes the kind relative to the keeper, and
every other member of the set is `exact` with `copy_of` naming its lead (None: a copy of the keeper itself).
So A' is always offered (its bytes stay in A), and A follows its own kind: the default action (exact and
near-duplicate copies) removes A' and, when A is only a similar shot, keeps A. An exact copy's `score` is
still its similarity to the keeper.

NEAR_DUPLICATE_SCORE = 0.98 is a chosen figure, not one measured here: these machines have no ImageNet
weights. With the deterministic random weights (tests), a half-size or quality-60 JPEG copy of the 18
test photos scores >= 0.995 against its original, but two different photos reach 0.993, so random weights
cannot separate them and the tests use a stricter threshold. The aspect-ratio test is what keeps a crop
or a rotated copy out of `near-duplicate`.

Mirrored and rotated copies (opt-in): search (`search_with_variants`, query-time) embeds the query's
mirror and 90/180/270-degree rotations beside the query itself, in one batch, and keeps each image's best
score over the five kNN searches (5 embeddings and 5 kNN queries per search instead of 1 and 1; measured in
bench/search_variants.py). For duplicates, their descriptors differ (VGG16 features are not flip- or
rotation-invariant), so a second pass, `variant_pairs`, embeds each image's mirror and 90/180/270-degree
rotations with the caller's extractor and searches them in the store (4 extra embeddings and kNN queries
per image: about 4x the embedding stage of indexing, measured in bench/duplicates.py --variants). Its pairs
go to `find_groups(variant_matches=...)`. A member that matches the keeper better after a transform than as
it is is offered as `similar` (never acted on by default, see core/file_actions.py), with the transform
named and its score taken after the transform.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.config import KEEPER_RULES
from core.paths import display_path, path_json
from core.store.base import Hit, ImageRecord, SearchFilter, VectorStore, record_json
from core.store.decisions import Decisions, pair

KINDS = ("exact", "near-duplicate", "similar")  # tightest first
KEEPER = "keeper"  # the kind shown for the keeper itself
NEAR_DUPLICATE_SCORE = 0.98  # cosine similarity; see the module docstring
ASPECT_TOLERANCE = 0.01  # relative difference of width/height
DEFAULT_K = 16  # neighbours asked for per image; larger groups still join through their members
DEFAULT_BATCH = 256  # query vectors per knn_many call
RULE_REASONS = {
    "reference": "in a reference folder",
    "resolution": "largest resolution",
    "size": "larger file",
    "oldest": "oldest",
}
DEFAULT_RULES = KEEPER_RULES  # the order of the keeper_rules setting's default
TIE_REASON = "first by path"  # every rule tied
# The variants of an image that `variant_pairs` searches for: mirror and rotations (counter-clockwise).
VARIANTS = {
    "mirror": Image.Transpose.FLIP_LEFT_RIGHT,
    "rotate-90": Image.Transpose.ROTATE_90,
    "rotate-180": Image.Transpose.ROTATE_180,
    "rotate-270": Image.Transpose.ROTATE_270,
}

Progress = Callable[[int, int], None]  # (images queried, images in the index)


Embed = Callable[[list[Image.Image]], np.ndarray]  # RGB images -> float32 (n, dims) unit descriptors


@dataclass(frozen=True)
class VariantPair:
    """Image `a`'s `variant` (a key of VARIANTS) matches image `b` with cosine similarity `score`."""

    a: str
    b: str
    score: float
    variant: str


@dataclass(frozen=True)
class VariantHit(Hit):
    """A search hit found through a transform of the query: `variant` is a key of VARIANTS and `score` the
    cosine similarity of the transformed query to the hit."""

    variant: str


class Cancelled(Exception):
    """The search for duplicates was cancelled; nothing was changed."""


@dataclass(frozen=True)
class Member:
    """One image of a duplicate Group, with its kind and cosine similarity relative to the group's keeper."""
    record: ImageRecord
    kind: str  # KEEPER or one of KINDS, relative to the group's keeper
    score: float  # cosine similarity to the keeper (1.0 for the keeper)
    reference: bool  # a path lies in a reference folder: never marked for an action
    variant: str | None = None  # a key of VARIANTS when the member matches the keeper after that transform
    copy_of: str | None = None  # kind "exact" only: the id of the lead of its exact set when that is not the keeper


@dataclass(frozen=True)
class Group:
    """A group of duplicate images (find_groups): the keeper to keep first, then the other copies."""
    # The keeper first, then each exact set's lead by kind (tightest first) and score (highest first), each
    # lead followed by its exact copies.
    members: tuple[Member, ...]
    reason: str  # why the keeper was chosen (RULE_REASONS' texts, or TIE_REASON)

    @property
    def keeper(self) -> Member:
        """The member to keep (chosen by the keeper rules; `reason` says why)."""
        return self.members[0]

    @property
    def others(self) -> tuple[Member, ...]:
        """Every member but the keeper, in `members` order."""
        return self.members[1:]

    @property
    def kind(self) -> str:
        """The loosest kind among the members other than the keeper."""
        return max((m.kind for m in self.others), key=KINDS.index)


def find_groups(
    store: VectorStore,
    threshold: float = 0.95,
    *,
    reference_folders: Sequence[str] = (),
    keeper_rules: Sequence[str] = DEFAULT_RULES,
    k: int = DEFAULT_K,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    decisions: Decisions | None = None,
    variant_matches: Iterable[VariantPair] = (),
) -> list[Group]:
    """Groups of duplicate images in `store`, each with a keeper; largest groups first.

    threshold: cosine similarity in [-1, 1] at or above which two images pair. reference_folders: absolute
    folders whose images are kept first and never marked. keeper_rules: names from RULE_REASONS, in order.
    k: neighbours asked per image (a group larger than k still joins through its members' neighbours).
    batch: query vectors per `knn_many` call. progress(done, total) after each batch. cancel: an object
    with `is_set()`, checked between batches; raises Cancelled. decisions: "not duplicates" pairs
    (core.store.decisions.decisions_for(store)) that never pair; None applies none. An excluded pair can
    still share a group through a third image that pairs with both. variant_matches: mirrored or rotated
    matches from `variant_pairs()`, joined like the others.

    Raises ValueError for an unknown rule or a k or batch below 1, StoreError from the store.
    """
    unknown = [rule for rule in keeper_rules if rule not in RULE_REASONS]
    if unknown:
        raise ValueError(f"unknown keeper rule {unknown[0]!r}; choose from {', '.join(RULE_REASONS)}")
    if k < 1 or batch < 1:
        raise ValueError("k and batch must be at least 1")
    excluded = decisions.excluded_pairs() if decisions is not None else set()
    parent: dict[str, str] = {}

    def join(a: str, b: str) -> None:
        if a != b and pair(a, b) not in excluded:
            parent[_root(parent, a)] = _root(parent, b)

    ids: list[str] = []
    first_with_hash: dict[str, str] = {}
    for record in store.records():
        ids.append(record.id)
        twin = first_with_hash.setdefault(record.hash, record.id)
        join(twin, record.id)
    variants: dict[tuple[str, str], VariantPair] = {}
    for found in variant_matches:
        join(found.a, found.b)
        best = variants.get(pair(found.a, found.b))
        if best is None or found.score > best.score:
            variants[pair(found.a, found.b)] = found
    total = len(ids)
    want = SearchFilter(min_score=threshold)
    for start in range(0, total, batch):
        if cancel is not None and cancel.is_set():
            raise Cancelled("the search for duplicates was cancelled")
        chunk = ids[start : start + batch]
        chunk, vectors = _vectors(store, chunk)
        if chunk:
            for query, hits in zip(chunk, store.knn_many(vectors, k + 1, want), strict=True):  # +1: itself
                for hit in hits:
                    join(query, hit.record.id)
        if progress is not None:
            progress(min(start + batch, total), total)
    components: dict[str, list[str]] = {}
    for image_id in parent:
        components.setdefault(_root(parent, image_id), []).append(image_id)
    members = [c for c in components.values() if len(c) > 1]
    records = store.get_many(i for c in members for i in c)
    vectors = store.vectors(list(records))  # of the grouped images only: memory O(grouped), few round trips
    folders = [_folder_key(f) for f in reference_folders]
    groups = []
    for component in members:
        found = [records[i] for i in component if i in records]  # an image deleted meanwhile is left out
        if len(found) > 1:
            groups.append(_group(found, vectors, folders, keeper_rules, variants))
    return sorted(groups, key=lambda g: (-len(g.members), g.keeper.record.path))


def variant_pairs(
    store: VectorStore,
    images: Iterable[tuple[str, Image.Image]],
    embed: Embed,
    threshold: float = 0.95,
    *,
    variants: Sequence[str] = tuple(VARIANTS),
    k: int = DEFAULT_K,
    batch: int = 16,
    cancel: threading.Event | None = None,
) -> list[VariantPair]:
    """The second pass for mirrored and rotated copies: each image's variants, embedded by `embed`, searched
    in `store`; the matches at or above `threshold` with another image.

    images: (image id, its decoded RGB image) pairs, consumed `batch` at a time (so memory holds one
    batch). embed: the extractor as a callable (RGB images -> float32 (n, dims) unit rows), e.g. the
    engine's. Cost: len(variants) embeddings and kNN queries per image. Raises ValueError for an unknown
    variant, Cancelled, StoreError.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    found: list[VariantPair] = []
    want = SearchFilter(min_score=threshold)
    chunk: list[tuple[str, Image.Image]] = []

    def search() -> None:
        queries = [(image_id, name) for image_id, _ in chunk for name in variants]
        vectors = embed([image.transpose(VARIANTS[name]) for _, image in chunk for name in variants])
        for (image_id, name), hits in zip(queries, store.knn_many(vectors, k + 1, want), strict=True):
            found.extend(VariantPair(image_id, h.record.id, h.score, name) for h in hits if h.record.id != image_id)
        chunk.clear()

    for item in images:
        if cancel is not None and cancel.is_set():
            raise Cancelled("the search for mirrored and rotated copies was cancelled")
        chunk.append(item)
        if len(chunk) == batch:
            search()
    if chunk:
        search()
    return found


def search_with_variants(search: Callable[[np.ndarray], list[Hit]], vectors: Sequence[tuple[str | None, np.ndarray]],
                         k: int) -> list[Hit]:
    """Query-time variants: the best `k` hits of `search(vector)` over `vectors`, (variant, float32 (dims,)
    unit descriptor) pairs where variant is None for the query as it is or a key of VARIANTS. Each image
    comes once, at its highest score (a tie goes to the earlier pair); one found best through a variant is
    a VariantHit. Highest score first. Raises what `search` raises."""
    best: dict[str, Hit] = {}
    for variant, vector in vectors:
        for hit in search(vector):
            if hit.record.id not in best or hit.score > best[hit.record.id].score:
                best[hit.record.id] = hit if variant is None else VariantHit(hit.record, hit.score, variant)
    return sorted(best.values(), key=lambda h: -h.score)[:k]


def variant_json(hit: Hit) -> dict:
    """`{"variant": name}` for a VariantHit (to merge into a hit's JSON), else `{}`."""
    return {"variant": hit.variant} if isinstance(hit, VariantHit) else {}


def member_kind(keeper: ImageRecord, member: ImageRecord, score: float) -> str:
    """`exact`, `near-duplicate` or `similar` for `member` against `keeper`, given their cosine `score`."""
    if member.hash == keeper.hash and member.size == keeper.size:
        return "exact"
    if score >= NEAR_DUPLICATE_SCORE and same_aspect(keeper, member):
        return "near-duplicate"
    return "similar"


def same_aspect(a: ImageRecord, b: ImageRecord, tolerance: float = ASPECT_TOLERANCE) -> bool:
    """True when the width/height ratios differ by at most `tolerance` (relative). Unknown sizes: False."""
    if not (a.width and a.height and b.width and b.height):
        return False
    return abs((a.width * b.height) / (a.height * b.width) - 1.0) <= tolerance


def group_json(group: Group) -> dict:
    """A group as JSON (CLI `--json`, HTTP API): `kind`, `keep` (the keeper's path as display text; with
    `keep_bytes` when the name is not UTF-8, core.paths.path_json), `reason`, and `images`, the keeper
    first: core.store.base.record_json plus `kind` ("keeper" or a member kind), `score` (cosine similarity
    to the keeper, 6 decimals), `reference` (true: in a reference folder, never acted on), for a mirrored or
    rotated copy `variant` (a key of VARIANTS), and for an exact copy of a member other than the keeper
    `copy_of` (that member's id)."""
    keep = path_json(group.keeper.record.path)
    return {
        "kind": group.kind,
        "keep": keep["path"],
        **({"keep_bytes": keep["path_bytes"]} if "path_bytes" in keep else {}),
        "reason": group.reason,
        "images": [{**record_json(m.record), "kind": m.kind, "score": round(m.score, 6), "reference": m.reference,
                    **({"variant": m.variant} if m.variant else {}),
                    **({"copy_of": m.copy_of} if m.copy_of else {})} for m in group.members],
    }


def describe(group: Group) -> str:
    """One line for people: the kind, the size of the group and the keeper with its reason."""
    return (f"{group.kind}: {len(group.members)} images, keep {display_path(group.keeper.record.path)} "
            f"({group.reason})")


# -- internals ----------------------------------------------------------------------------------------

def _root(parent: dict[str, str], i: str) -> str:
    while parent.setdefault(i, i) != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


def _vectors(store: VectorStore, ids: Iterable[str]) -> tuple[list[str], np.ndarray]:
    """The ids still in the store, in order, and their vectors, float32 (n, dims): one `vectors` call."""
    ids = list(ids)
    found = store.vectors(ids)
    kept = [i for i in ids if i in found]
    return kept, (np.stack([found[i] for i in kept]).astype(np.float32) if kept else np.zeros((0, 0), np.float32))


def _folder_key(folder: str) -> str:
    return os.path.realpath(os.path.expanduser(folder)).rstrip(os.sep) + os.sep


def _in_folders(record: ImageRecord, folder_keys: Sequence[str]) -> bool:
    return any(path.startswith(key) for path in record.paths for key in folder_keys)


def _rule_value(rule: str, record: ImageRecord, reference: bool) -> int:
    """Larger is better for every rule."""
    if rule == "reference":
        return int(reference)
    if rule == "resolution":
        return record.width * record.height
    if rule == "size":
        return record.size
    return -record.mtime_ns  # "oldest"


def _group(records: list[ImageRecord], vectors: dict[str, np.ndarray], folder_keys: list[str], rules: Sequence[str],
           variants: dict[tuple[str, str], VariantPair]) -> Group:
    reference = {r.id: _in_folders(r, folder_keys) for r in records}

    def rank(r: ImageRecord) -> tuple:
        return tuple(-_rule_value(rule, r, reference[r.id]) for rule in rules) + (r.path,)

    ordered = sorted(records, key=rank)
    keeper = ordered[0]
    # The reason is the first rule that sets the keeper above any other member (an exact copy ties on
    # every rule, so comparing with the runner-up alone would often say nothing).
    best = rank(keeper)[:-1]
    deciding = [next((i for i, (a, b) in enumerate(zip(best, rank(r)[:-1], strict=True)) if a != b), None)
                for r in ordered[1:]]
    decided = [i for i in deciding if i is not None]
    reason = RULE_REASONS[rules[min(decided)]] if decided else TIE_REASON
    keeper_vector = vectors.get(keeper.id)
    leads: dict[tuple[str, int], ImageRecord] = {}  # (hash, size) -> the first of its exact set in rank order
    members = [Member(keeper, KEEPER, 1.0, reference[keeper.id])]
    for r in ordered:
        lead = leads.setdefault((r.hash, r.size), r)
        if r is keeper:
            continue
        # Cosine of unit vectors; 0.0 when a vector vanished meanwhile (deleted by another process).
        score = float(min(1.0, vectors[r.id] @ keeper_vector)) if keeper_vector is not None and r.id in vectors else 0.0
        if lead is not r:  # a copy of another member's bytes (the keeper's or a lead's): see the module docstring
            members.append(Member(r, "exact", score, reference[r.id], copy_of=None if lead is keeper else lead.id))
            continue
        kind = member_kind(keeper, r, score)
        variant = variants.get(pair(keeper.id, r.id))
        if variant is not None and variant.score > score:  # a transformed copy
            members.append(Member(r, "similar", float(min(1.0, variant.score)), reference[r.id], variant.variant))
        else:
            members.append(Member(r, kind, score, reference[r.id]))
    by_id = {m.record.id: m for m in members}

    def order(m: Member) -> tuple:
        lead = by_id[m.copy_of] if m.copy_of else m
        return (KINDS.index(lead.kind), -lead.score, lead.record.path, m is not lead, m.record.path)

    members[1:] = sorted(members[1:], key=order)
    return Group(tuple(members), reason)
