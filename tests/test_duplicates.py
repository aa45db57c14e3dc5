"""Duplicate groups: kinds, keepers and reasons, decisions, batching; on the real embedded store, and on real
files embedded by the real VGG16 graph (deterministic random weights)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.duplicates import (
    DEFAULT_RULES,
    TIE_REASON,
    VARIANTS,
    Cancelled,
    describe,
    find_groups,
    group_json,
    member_kind,
    same_aspect,
    variant_pairs,
)
from core.images import ImageError
from core.model import to_model_pixels
from core.store.base import ImageRecord, ModelIdentity, new_image_id
from core.store.decisions import decisions_for
from tests.corpus import rotated_library

pytest_plugins = ["tests.es_fixtures"]
DIMS = 16
IDENTITY = ModelIdentity("gem", DIMS, "random-0")


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def near(base: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    """A unit vector at exactly `cosine` from the unit vector `base`."""
    other = np.random.default_rng(seed).standard_normal(base.shape)
    other = unit(other - other @ base * base)
    return unit(cosine * base + np.sqrt(1 - cosine**2) * other)


def rec(path: str, *, size=1000, w=640, h=480, mtime=0, h_=None, paths=None) -> ImageRecord:
    return ImageRecord(new_image_id(), tuple(paths or (path,)), size, 10**18 + mtime, 10**18 + mtime, 1,
                       h_ or hashlib.blake2b(os.fsencode(path), digest_size=16).hexdigest(), w, h)


@pytest.fixture(params=["embedded", "elasticsearch"])
def store(request, tmp_path):
    """Both backends; Elasticsearch is the real test server (tests/es_fixtures.py)."""
    if request.param == "embedded":
        from core.store.embedded import EmbeddedStore

        s = EmbeddedStore(tmp_path / "data")
    else:
        from core.store.elastic import ElasticStore

        s = ElasticStore(request.getfixturevalue("es_url"), request.getfixturevalue("es_alias"))
    s.initialize(IDENTITY)
    yield s
    s.close()


def put(store, pairs: list[tuple[ImageRecord, np.ndarray]]) -> None:
    store.upsert([r for r, _ in pairs], np.stack([v for _, v in pairs]))


def by_path(group):
    return {m.record.path: m for m in group.members}


def test_kinds_keeper_and_reason(store):
    rng = np.random.default_rng(1)
    base = unit(rng.standard_normal(DIMS))
    big = rec("/p/big.jpg", size=3000, w=4000, h=3000, h_="a" * 32)
    copy = rec("/p/copy.jpg", size=3000, w=4000, h=3000, h_="a" * 32)  # same bytes
    small = rec("/p/small.jpg", size=800, w=1000, h=750)  # resized: same aspect
    crop = rec("/p/crop.jpg", size=900, w=1000, h=1000)  # square crop
    other = rec("/p/other.jpg")
    linked = rec("/p/link-a.jpg", paths=("/p/link-a.jpg", "/q/link-b.jpg"))  # hard links: one record
    put(store, [(big, base), (copy, base), (small, near(base, 0.99, 2)), (crop, near(base, 0.985, 3)),
                (other, unit(rng.standard_normal(DIMS))), (linked, unit(rng.standard_normal(DIMS)))])

    groups = find_groups(store, 0.95)
    assert len(groups) == 1
    group = groups[0]
    assert group.keeper.record.path == "/p/big.jpg"
    assert group.reason == "largest resolution"
    members = by_path(group)
    assert set(members) == {"/p/big.jpg", "/p/copy.jpg", "/p/small.jpg", "/p/crop.jpg"}
    assert [m.kind for m in group.members] == ["keeper", "exact", "near-duplicate", "similar"]
    assert members["/p/small.jpg"].score == pytest.approx(0.99, abs=1e-5)
    assert members["/p/crop.jpg"].score == pytest.approx(0.985, abs=1e-5)
    assert group.kind == "similar"
    assert describe(group) == "similar: 4 images, keep /p/big.jpg (largest resolution)"


def test_exact_copies_group_whatever_the_threshold(store):
    rng = np.random.default_rng(2)
    a, b = rec("/p/a.jpg", h_="b" * 32), rec("/p/b.jpg", h_="b" * 32)
    put(store, [(a, unit(rng.standard_normal(DIMS))), (b, unit(rng.standard_normal(DIMS)))])
    [group] = find_groups(store, 0.9999)
    assert group.kind == "exact"


def test_exact_copies_of_a_member_are_exact_copies_of_it(store):
    """Keeper K; A a similar shot of K; A2 and A3 byte-identical to A. A keeps its kind relative to K; A's copies
    are `exact` with `copy_of` A (whatever their vectors), so the default action removes them and keeps A."""
    from core.file_actions import plan

    base = unit(np.random.default_rng(12).standard_normal(DIMS))
    keeper = rec("/p/k.jpg", size=9000, w=4000, h=3000, h_="c" * 32)
    shot = near(base, 0.96, 13)
    a = rec("/p/a.jpg", size=5000, w=4000, h=3000, h_="d" * 32)
    a2 = rec("/p/x/a.jpg", size=5000, w=4000, h=3000, h_="d" * 32, mtime=-5)  # older: the set's lead
    a3 = rec("/p/y/a.jpg", size=5000, w=4000, h=3000, h_="d" * 32)
    put(store, [(keeper, base), (a, shot), (a2, shot), (a3, near(shot, 0.9, 14))])  # a3: vector drift ignored

    [group] = find_groups(store, 0.95)
    assert group.keeper.record.path == "/p/k.jpg"
    assert [(m.record.path, m.kind, m.copy_of) for m in group.members] == [
        ("/p/k.jpg", "keeper", None), ("/p/x/a.jpg", "similar", None),
        ("/p/a.jpg", "exact", a2.id), ("/p/y/a.jpg", "exact", a2.id)]
    assert group.kind == "similar"
    assert [i.get("copy_of") for i in group_json(group)["images"]] == [None, None, a2.id, a2.id]
    assert sorted(r.path for r in plan([group]).records) == ["/p/a.jpg", "/p/y/a.jpg"]
    assert len(plan([group], {"exact", "near-duplicate", "similar"}).records) == 3  # the keeper stays


def test_keeper_rules_in_order(store, tmp_path):
    base = unit(np.random.default_rng(3).standard_normal(DIMS))
    ref = tmp_path / "ref"
    ref.mkdir()
    in_ref = rec(f"{ref}/old-small.jpg", size=10, w=100, h=75, mtime=-5)
    large_file = rec("/p/large-file.jpg", size=9000, w=400, h=300, mtime=5)
    high_res = rec("/p/high-res.jpg", size=5000, w=800, h=600, mtime=9)
    put(store, [(in_ref, base), (large_file, near(base, 0.99, 4)), (high_res, near(base, 0.99, 5))])

    def keeper(**kwargs):
        [group] = find_groups(store, 0.9, **kwargs)
        return group.keeper.record.path, group.reason, by_path(group)

    path, reason, members = keeper(reference_folders=[str(ref)])
    assert (path, reason) == (in_ref.path, "in a reference folder")
    assert members[in_ref.path].reference and not members[high_res.path].reference
    assert keeper()[:2] == (high_res.path, "largest resolution")
    assert keeper(keeper_rules=("size", "resolution"))[:2] == (large_file.path, "larger file")
    assert keeper(keeper_rules=("oldest",))[:2] == (in_ref.path, "oldest")
    with pytest.raises(ValueError, match="unknown keeper rule"):
        keeper(keeper_rules=("prettiest",))
    assert DEFAULT_RULES == ("reference", "resolution", "size", "oldest")


def test_tied_keeper_is_the_first_path(store):
    base = unit(np.random.default_rng(4).standard_normal(DIMS))
    put(store, [(rec("/p/b.jpg"), base), (rec("/p/a.jpg"), near(base, 0.999, 6))])
    [group] = find_groups(store, 0.9)
    assert (group.keeper.record.path, group.reason) == ("/p/a.jpg", TIE_REASON)


def test_not_duplicates_decisions_hide_pairs_until_reset(store):
    rng = np.random.default_rng(5)
    base, base2 = unit(rng.standard_normal(DIMS)), unit(rng.standard_normal(DIMS))
    a, b, c, d = rec("/p/a.jpg"), rec("/p/b.jpg"), rec("/p/c.jpg"), rec("/p/d.jpg")
    put(store, [(a, base), (b, near(base, 0.99, 7)), (c, base2), (d, near(base2, 0.99, 8))])
    decisions = decisions_for(store)
    try:
        decisions.mark_not_duplicates([a.id, b.id])
        groups = find_groups(store, 0.95, decisions=decisions)
        assert [sorted(by_path(g)) for g in groups] == [["/p/c.jpg", "/p/d.jpg"]]
        decisions.mark_not_duplicates([m.record.id for m in groups[0].members])  # a whole group
        assert find_groups(store, 0.95, decisions=decisions) == []
        decisions.reset()
        assert len(find_groups(store, 0.95, decisions=decisions)) == 2
    finally:
        decisions.close()


def test_batches_find_the_same_components_as_all_pairs(store):
    """Planted clusters larger than k, queried in small batches, against connected components of the
    exact all-pairs similarity matrix."""
    rng = np.random.default_rng(6)
    pairs = []
    for c in range(12):
        base = unit(rng.standard_normal(DIMS))
        pairs += [(rec(f"/p/{c}-{i}.jpg"), near(base, 0.97, 100 * c + i)) for i in range(int(rng.integers(1, 9)))]
    pairs += [(rec(f"/p/noise-{i}.jpg"), unit(rng.standard_normal(DIMS))) for i in range(40)]
    put(store, pairs)
    calls = []
    groups = find_groups(store, 0.9, k=3, batch=7, progress=lambda done, total: calls.append((done, total)))
    vectors = np.stack([v for _, v in pairs])
    adjacency = vectors @ vectors.T >= 0.9
    label = list(range(len(pairs)))
    for _ in range(len(pairs)):  # label propagation to a fixed point: the exact components
        label = [min(label[j] for j in np.flatnonzero(adjacency[i])) for i in range(len(pairs))]
    expected = {}
    for i, lab in enumerate(label):
        expected.setdefault(lab, set()).add(pairs[i][0].path)
    assert sorted(sorted(by_path(g)) for g in groups) == sorted(sorted(s) for s in expected.values() if len(s) > 1)
    assert calls[-1] == (len(pairs), len(pairs)) and len(calls) == -(-len(pairs) // 7)


def test_cancel_stops_between_batches(store):
    base = unit(np.random.default_rng(7).standard_normal(DIMS))
    put(store, [(rec("/p/a.jpg"), base), (rec("/p/b.jpg"), base)])
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        find_groups(store, cancel=cancel)


def test_group_json_shape(store):
    base = unit(np.random.default_rng(8).standard_normal(DIMS))
    name = os.fsdecode(b"/p/caf\xe9.jpg")  # not UTF-8: Latin-1
    put(store, [(rec(name, size=5000), base), (rec("/p/b.jpg"), near(base, 0.99, 9))])
    [group] = find_groups(store, 0.9)
    data = group_json(group)
    assert data["kind"] == "near-duplicate" and data["reason"] == "larger file"
    assert data["keep"] == "/p/caf\ufffd.jpg" and os.fsdecode(base64.b64decode(data["keep_bytes"])) == name
    assert [i["kind"] for i in data["images"]] == ["keeper", "near-duplicate"]
    for image in data["images"]:
        assert {"path", "id", "kind", "score", "size", "width", "height", "reference"} <= set(image)
    assert data["images"][1]["score"] == pytest.approx(0.99, abs=1e-5)


def test_member_kind_rule():
    a = rec("/a.jpg", w=4000, h=3000)
    assert same_aspect(a, rec("/b.jpg", w=1000, h=750)) and same_aspect(a, rec("/b.jpg", w=1009, h=750))
    assert not same_aspect(a, rec("/b.jpg", w=1020, h=750)) and not same_aspect(a, rec("/b.jpg", w=0, h=0))
    assert member_kind(a, rec("/b.jpg", w=400, h=300), 0.98) == "near-duplicate"
    assert member_kind(a, rec("/b.jpg", w=400, h=300), 0.979) == "similar"
    assert member_kind(a, rec("/b.jpg", w=300, h=400), 0.999) == "similar"  # rotated: another aspect


# -- real files, real VGG16 graph -------------------------------------------------------------------------

def test_real_files(engine, photo_dir, tmp_path):
    """Exact copies, a re-encoded and a resized copy, a mirrored copy, a hard link and a reference folder,
    indexed by the real pipeline. Random weights do not tell photos apart as ImageNet's do (two different
    test photos reach 0.993), so the threshold here is one the chosen photos stay under."""
    lib, ref = tmp_path / "lib", tmp_path / "ref"
    lib.mkdir()
    ref.mkdir()
    original = Image.open(photo_dir / "astronaut.jpg")
    (ref / "astronaut.jpg").write_bytes((photo_dir / "astronaut.jpg").read_bytes())
    (lib / "exact.jpg").write_bytes((photo_dir / "astronaut.jpg").read_bytes())
    original.save(lib / "reencoded.jpg", quality=60)
    original.resize((original.width // 2, original.height // 2), Image.Resampling.LANCZOS).save(lib / "half.png")
    original.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(lib / "mirror.jpg", quality=92)
    Image.open(photo_dir / "chelsea.jpg").transpose(Image.Transpose.ROTATE_90).save(lib / "chelsea-rot90.jpg")
    (lib / "coffee.jpg").write_bytes((photo_dir / "coffee.jpg").read_bytes())
    os.link(lib / "coffee.jpg", lib / "coffee-link.jpg")
    engine.index([str(lib), str(ref)])
    store = engine.store
    coffee = store.get_by_path(str(lib / "coffee.jpg"))
    assert coffee is not None and sorted(coffee.paths) == [str(lib / "coffee-link.jpg"), str(lib / "coffee.jpg")]

    threshold = 0.995
    [group] = find_groups(store, threshold, reference_folders=[str(ref)])
    members = by_path(group)
    assert group.keeper.record.path == str(ref / "astronaut.jpg") and group.reason == "in a reference folder"
    assert members[str(lib / "exact.jpg")].kind == "exact"
    assert members[str(lib / "reencoded.jpg")].kind == "near-duplicate"
    assert members[str(lib / "half.png")].kind == "near-duplicate"
    assert str(lib / "coffee.jpg") not in members  # its hard link is the same image, not a copy
    assert not any(Path(p).name.startswith("coffee") for p in members)

    assert str(lib / "chelsea-rot90.jpg") not in members  # rotated: found by the opt-in pass only


def test_rotated_copies_found_by_the_variant_pass(engine, photo_dir, tmp_path, shared_extractor):
    """The opt-in second pass finds a rotated copy through the original's rotation, and names a mirrored copy."""
    lib = rotated_library(photo_dir, tmp_path / "lib")
    chelsea = Image.open(photo_dir / "chelsea.jpg")
    assert chelsea.width != chelsea.height
    chelsea.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(lib / "chelsea-mirror.jpg", quality=92)
    os.utime(lib / "chelsea.jpg", ns=(10**18, 10**18))  # the oldest: the keeper
    engine.index([str(lib)])
    store = engine.store
    threshold = 0.995
    rotated_path = str(lib / "chelsea-rot90.jpg")
    assert not any(rotated_path in by_path(g) for g in find_groups(store, threshold))  # not without the pass

    def embed(images):
        return shared_extractor.embed(np.stack([to_model_pixels(image) for image in images]))

    images = ((r.id, Image.open(r.path).convert("RGB")) for r in store.records())
    found = variant_pairs(store, images, embed, threshold, batch=2)
    assert {p.variant for p in found} <= set(VARIANTS)
    [group] = find_groups(store, threshold, variant_matches=found, keeper_rules=("oldest",))
    assert group.keeper.record.path == str(lib / "chelsea.jpg")
    members = by_path(group)
    assert sorted(members) == [str(lib / n) for n in ("chelsea-mirror.jpg", "chelsea-rot90.jpg", "chelsea.jpg")]
    rotated, mirrored = members[rotated_path], members[str(lib / "chelsea-mirror.jpg")]
    assert rotated.kind == "similar" and rotated.variant in ("rotate-90", "rotate-270") and rotated.score >= threshold
    assert (mirrored.kind, mirrored.variant) == ("similar", "mirror")
    assert {i["path"]: i.get("variant") for i in group_json(group)["images"]}[rotated_path] == rotated.variant
    with pytest.raises(ValueError, match="unknown variant"):
        variant_pairs(store, [], embed, variants=["skew"])


# -- through the Engine and the job queue -----------------------------------------------------------------------

@pytest.fixture(params=["embedded", "elasticsearch"])
def any_engine(request, settings, shared_extractor):
    """An Engine on a fresh index of either backend (Elasticsearch: the shared test server), reference folder
    /p/ref in its settings."""
    from core.engine import Engine

    settings = settings.replace(reference_folders="/p/ref")
    if request.param == "elasticsearch":
        settings = settings.replace(backend="elasticsearch", es_url=request.getfixturevalue("es_url"),
                                    es_index=request.getfixturevalue("es_alias"))
    engine = Engine(settings, extractor=shared_extractor)
    engine.store.initialize(engine.identity)
    yield engine
    engine.close()


def test_engine_groups_with_settings_and_decisions(any_engine):
    dims = any_engine.identity.dims
    base = unit(np.random.default_rng(3).standard_normal(dims))
    kept, copy, other = rec("/p/ref/a.jpg", w=64, h=48), rec("/p/b.jpg"), rec("/p/c.jpg")
    put(any_engine.store, [(kept, base), (copy, near(base, 0.99, 1)), (other, near(base, 0.5, 2))])
    any_engine.store.finish()

    [group] = any_engine.duplicate_groups(0.95)
    assert group.keeper.record.id == kept.id and group.reason == "in a reference folder"  # from the settings
    [group] = any_engine.duplicate_groups(0.95, reference_folders=[])  # the argument wins
    assert group.keeper.record.id == copy.id and group.reason == "largest resolution"
    plan = any_engine.plan_duplicates(any_engine.duplicate_groups(0.95))
    assert [r.id for r in plan.records] == [copy.id]  # a near-duplicate of the keeper; the reference never

    assert any_engine.mark_not_duplicates([kept.id, copy.id]) == 1
    assert any_engine.duplicate_groups(0.95) == []
    any_engine.reset_decisions()
    assert len(any_engine.duplicate_groups(0.95)) == 1


def test_duplicates_job_reports_progress_and_cancels(engine):
    from core.jobs import queue_for

    engine.store.initialize(engine.identity)
    n = 600  # three batches of DEFAULT_BATCH queries
    vectors = unit(np.random.default_rng(5).standard_normal((n, engine.identity.dims)))
    vectors[1] = vectors[0]
    engine.store.upsert([rec(f"/p/{i}.jpg") for i in range(n)], vectors)
    engine.store.finish()
    queue = queue_for(engine)
    try:
        job = queue.submit_duplicates(0.99)
        done = queue.wait(job.id, 120)
        assert done["state"] == "done" and done["report"] == {"threshold": 0.99, "groups": 1, "images": 2}
        assert done["done"] == done["total"] == n
        [group] = queue.result(job.id)
        assert len(group.members) == 2

        cancelled = []

        def cancel_after_first_batch(job: dict) -> None:
            if job["kind"] == "duplicates" and job["state"] == "running" and job["done"] and not cancelled:
                cancelled.append(job["done"])
                queue.cancel(job["job_id"])

        queue.subscribe(cancel_after_first_batch)
        job = queue.submit_duplicates(0.99)
        stopped = queue.wait(job.id, 120)
        assert stopped["state"] == "cancelled" and stopped["error"] is None, stopped
        assert cancelled == [256] and stopped["done"] < n and queue.result(job.id) is None
    finally:
        queue.shutdown()


def test_engine_variant_pass_finds_a_rotated_copy(engine, photo_dir, tmp_path):
    lib = rotated_library(photo_dir, tmp_path / "lib")
    (lib / "broken.jpg").write_bytes(b"not an image")  # skipped by the index; costs the pass nothing
    engine.index([str(lib)])
    assert engine.duplicate_groups(0.995) == []
    [group] = engine.duplicate_groups(0.995, variants=True)
    assert sorted(m.record.name for m in group.members) == ["chelsea-rot90.jpg", "chelsea.jpg"]
    assert group.others[0].variant in ("rotate-90", "rotate-270") and group.kind == "similar"


# -- mirrored and rotated copies in search (query-time variants), the CLI and the API -----------------------------

def indexed_rotated_library(engine, photo_dir, tmp_path) -> Path:
    """tests.corpus.rotated_library (chelsea, its copy rotated by 90 degrees, coffee), indexed by the real
    pipeline."""
    lib = rotated_library(photo_dir, tmp_path / "lib")
    engine.index([str(lib)])
    return lib


def test_search_and_similar_with_variants(engine, photo_dir, tmp_path):
    from core.duplicates import VariantHit

    lib = indexed_rotated_library(engine, photo_dir, tmp_path)
    rotated = str(lib / "chelsea-rot90.jpg")
    plain = {h.record.path: h for h in engine.search(lib / "chelsea.jpg", k=3)}
    assert not any(isinstance(h, VariantHit) for h in plain.values())
    for hits in (engine.search(lib / "chelsea.jpg", k=3, variants=True),
                 engine.similar(str(lib / "chelsea.jpg"), k=3, variants=True)):
        found = {h.record.path: h for h in hits}
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert found[str(lib / "chelsea.jpg")].score == pytest.approx(1.0, abs=1e-4)
        assert not isinstance(found[str(lib / "chelsea.jpg")], VariantHit)  # itself: as it is
        assert isinstance(found[rotated], VariantHit) and found[rotated].variant in ("rotate-90", "rotate-270")
        assert found[rotated].score >= 0.995 > plain[rotated].score
    assert len(engine.search(lib / "chelsea.jpg", k=1, variants=True)) == 1  # k holds over the five searches
    os.remove(lib / "chelsea.jpg")
    with pytest.raises(ImageError):  # `similar` with variants decodes the file
        engine.similar(str(lib / "chelsea.jpg"), variants=True)


def test_api_variants(engine, photo_dir, tmp_path):
    """`variants=true` on search, similar and duplicates; answers of the documented shape."""
    from core.api.app import create_app

    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    lib = indexed_rotated_library(engine, photo_dir, tmp_path)
    rotated = str(lib / "chelsea-rot90.jpg")
    client = create_app(engine, engine.settings).test_client()
    spec = client.get("/api/openapi.json").get_json()

    def valid(body: dict, schema: str) -> dict:
        jsonschema_rs.Draft202012Validator({"$ref": f"#/components/schemas/{schema}",
                                            "components": spec["components"]}).validate(body)
        return body

    upload = (lib / "chelsea.jpg").read_bytes()
    response = client.post("/api/search", data={"image": (io.BytesIO(upload), "q.jpg"), "variants": "true", "k": "3"})
    results = {r["path"]: r for r in valid(response.get_json(), "Results")["results"]}
    assert results[rotated]["variant"] in ("rotate-90", "rotate-270")
    assert "variant" not in results[str(lib / "chelsea.jpg")]
    body = client.post("/api/search", json={"image": base64.b64encode(upload).decode(), "k": 3}).get_json()
    assert not any("variant" in r for r in body["results"])  # off by default

    chelsea = engine.resolve(str(lib / "chelsea.jpg"))
    results = valid(client.get(f"/api/images/{chelsea.id}/similar?k=3&variants=1").get_json(), "Results")["results"]
    assert {r["path"]: r.get("variant") for r in results}[rotated] in ("rotate-90", "rotate-270")

    assert client.get("/api/duplicates?threshold=0.995").get_json()["groups"] == []
    body = valid(client.get("/api/duplicates?threshold=0.995&variants=true").get_json(), "Duplicates")
    assert body["variants"] is True
    [group] = body["groups"]  # whichever is kept, the other is its rotated copy
    assert sorted(i["path"] for i in group["images"]) == [rotated, str(lib / "chelsea.jpg")]
    assert group["images"][1]["variant"] in ("rotate-90", "rotate-270")
    for bad in ("/api/duplicates?variants=maybe", f"/api/images/{chelsea.id}/similar?variants=2"):
        response = client.get(bad)
        assert response.status_code == 400 and "variants" in response.get_json()["detail"]
