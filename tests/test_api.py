"""The HTTP API through Flask's test client: every route, every error case, auth and CORS."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import struct
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

from core.api import create_app
from core.api.shapes import hit_json, record_json
from core.config import Settings, cache_dir
from core.engine import Engine
from core.indexer import IndexProgress, IndexReport
from core.model import WeightsError
from core.store import new_image_id
from core.store.base import Hit, IdentityMismatch, ImageRecord, StoreError
from core.thumbnails import THUMBNAIL_SIZE

# Six photos are enough to rank; each costs a VGG16 pass, so the index is built once per module.
INDEXED = ["astronaut", "coffee", "chelsea", "rocket", "coins", "moon"]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, photo_dir, shared_extractor) -> Engine:
    root = tmp_path_factory.mktemp("api-index")
    folder = root / "photos"
    folder.mkdir()
    for name in INDEXED:
        shutil.copy(photo_dir / f"{name}.jpg", folder)
    engine = Engine(Settings(data_dir=str(root / "data"), weights="random"), extractor=shared_extractor)
    report = engine.index([folder])
    assert report.indexed == len(INDEXED), report.summary()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def client(indexed):
    return create_app(indexed, indexed.settings).test_client()


def photo(indexed: Engine, name: str) -> Path:
    return Path(indexed.settings.data_dir).parent / "photos" / f"{name}.jpg"


def record_of(indexed: Engine, name: str) -> ImageRecord:
    return indexed.store.get_by_path(str(photo(indexed, name).resolve()))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def assert_error(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.data[:500]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error", "detail", "status"} and body["status"] == status
    for word in words:
        assert word.lower() in (body["error"] + " " + body["detail"]).lower(), body
    return body


def bomb_png(side: int = 20000) -> bytes:
    """A tiny PNG that claims 400 megapixels: Pillow's decompression bomb guard must refuse it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# -- health, page, openapi -----------------------------------------------------------------------
def test_health(client, indexed):
    body = client.get("/api/health").get_json()
    assert body["status"] == "ok" and body["backend"] == "embedded" and body["count"] == len(INDEXED)
    assert body["model"] == indexed.identity.to_dict() and body["model_label"] == indexed.identity.label()
    assert body["model_loaded"] is True and body["version"]


def test_health_is_503_with_the_reason_until_the_weights_are_here(tmp_path, monkeypatch):
    """Checked without building the network: the ImageNet weights must be on this computer, a weights file
    must still exist; a model that failed to build is reported until it is built."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("IMAGE_SEARCH_BUNDLED_WEIGHTS", raising=False)
    engine = Engine(Settings(data_dir=str(tmp_path / "data"), weights="imagenet"))
    try:
        app = create_app(engine, engine.settings.replace(api_token="t"))
        client = app.test_client()
        notop = tmp_path / "keras" / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
        assert_error(client.get("/api/health"), 503, "model unavailable", "not on this computer", str(notop))
        notop.parent.mkdir(parents=True)
        notop.write_bytes(b"stands in for the weights: only their presence is checked")
        assert client.get("/api/health").get_json() == {"status": "ok", "model_loaded": False}
        app.extensions["image_search"].model_error = "the model could not be loaded: bad file"
        assert_error(client.get("/api/health"), 503, "bad file")
    finally:
        engine.close()
    weights = tmp_path / "my-weights.h5"
    weights.write_bytes(b"x")
    engine = Engine(Settings(data_dir=str(tmp_path / "data2"), weights=str(weights)))
    try:
        client = create_app(engine, engine.settings).test_client()
        assert client.get("/api/health").status_code == 200
        weights.unlink()
        assert_error(client.get("/api/health"), 503, "weights file not found", str(weights))
    finally:
        engine.close()


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b'id="file-input"' in page.data and "script-src 'self'" in page.headers["Content-Security-Policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    assert_error(client.get("/static/../core/api.py"), 404)
    assert_error(client.get("/static/%2e%2e/core/api.py"), 404)


def test_openapi_documents_every_route(client):
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.") and spec["info"]["version"]
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    for rule in client.application.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = rule.rule.replace("<", "{").replace(">", "}")
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert (path, method) in documented, f"{method} {path} is not in openapi.json"
    assert "Error" in spec["components"]["schemas"]


def test_unknown_routes_and_methods_are_json(client):
    assert_error(client.get("/api/nope"), 404, "no such route")
    assert_error(client.get("/nope"), 404)
    response = assert_error(client.delete("/api/search"), 405)
    assert "POST" in client.delete("/api/search").headers["Allow"]
    assert response["error"] == "Method Not Allowed"
    assert_error(client.get("/api/search"), 405)
    assert_error(client.post("/api/health"), 405)
    assert_error(client.put("/api/jobs/abc"), 405)


def test_head_is_answered_for_get_routes(client):
    response = client.head("/api/health")
    assert response.status_code == 200 and response.data == b""


# -- search --------------------------------------------------------------------------------------
RECORD_FIELDS = {"id", "path", "paths", "name", "folder", "size", "width", "height", "mtime", "thumbnail_url",
                 "image_url"}
HIT_FIELDS = RECORD_FIELDS | {"score", "tags", "labels", "taken", "camera"}


def assert_results(body: dict, k: int | None = None) -> list[dict]:
    results = body["results"]
    assert isinstance(body["took_ms"], float | int) and body["took_ms"] >= 0
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    for r in results:
        assert set(r) == HIT_FIELDS
        assert r["thumbnail_url"] == f"/api/images/{r['id']}/thumbnail"
        assert r["image_url"] == f"/api/images/{r['id']}/file"
    if k is not None:
        assert len(results) == k
    return results


def test_search_accepts_the_original_projects_request(client, indexed):
    # The seed project's client posted exactly this: JSON with the file's bytes in base64, nothing else.
    data = photo(indexed, "coffee").read_bytes()
    response = client.post("/api/search", json={"image": b64(data)})
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["results", "took_ms", "images_data"]
    results = assert_results(body, k=len(INDEXED))  # k=10 > index size; random weights score photos >= 0.77
    assert results[0]["name"] == "coffee.jpg" and results[0]["score"] > 0.99
    coffee = record_of(indexed, "coffee")
    assert results[0]["id"] == coffee.id
    assert (results[0]["width"], results[0]["height"]) == (coffee.width, coffee.height)
    # One thumbnail per hit, best first: the same bytes as the hit's /thumbnail.
    assert len(body["images_data"]) == len(results)
    for result, encoded in zip(results, body["images_data"], strict=True):
        thumb = base64.b64decode(encoded)
        assert thumb == client.get(result["thumbnail_url"]).data
        with Image.open(io.BytesIO(thumb)) as image:
            assert max(image.size) == THUMBNAIL_SIZE
    # Any other field (or a query parameter) makes it today's request: no threshold, no images_data.
    for request in ({"json": {"image": b64(data), "k": 10}}, {"json": {"image": b64(data)}, "query_string": "k=3"}):
        assert "images_data" not in client.post("/api/search", **request).get_json()


def test_original_request_applies_the_threshold_and_says_when_nothing_matches(engine, tmp_path, photo_dir):
    """Random stored vectors are nearly orthogonal to any photo's descriptor: nothing reaches 0.5."""
    engine.store.initialize(engine.identity)
    path = tmp_path / "rocket.jpg"
    shutil.copy(photo_dir / "rocket.jpg", path)
    record = ImageRecord(id=new_image_id(), paths=(str(path),), ctime_ns=0, inode=0,
                         size=path.stat().st_size, mtime_ns=path.stat().st_mtime_ns, hash="r", width=1, height=1)
    engine.store.upsert([record], unit_vectors(1, engine.identity.dims))
    client = create_app(engine, engine.settings).test_client()
    image = b64((photo_dir / "coffee.jpg").read_bytes())
    body = client.post("/api/search", json={"image": image}).get_json()
    assert body["results"] == [] and "0.5" in body["message"] and "images_data" not in body
    everything = client.post("/api/search", json={"image": image, "min_score": -1}).get_json()
    assert len(everything["results"]) == 1 and everything["results"][0]["score"] < 0.5
    # A hit whose file is gone gets null in images_data; the others keep theirs.
    engine.store.upsert([record], engine.embed(photo_dir / "coffee.jpg")[None])
    path.unlink()
    body = client.post("/api/search", json={"image": image}).get_json()
    assert len(body["results"]) == 1 and body["images_data"] == [None]


def test_search_tolerates_data_urls_line_breaks_and_missing_padding(client, indexed):
    data = photo(indexed, "rocket").read_bytes()
    encoded = b64(data)
    wrapped = "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
    urlsafe = base64.urlsafe_b64encode(data).decode().rstrip("=")
    for image in (f"data:image/jpeg;base64,{encoded}", wrapped, urlsafe):
        response = client.post("/api/search", json={"image": image, "k": 2})
        assert response.status_code == 200, response.get_json()
        assert assert_results(response.get_json(), k=2)[0]["name"] == "rocket.jpg"


def test_search_json_without_content_type(client, indexed):
    body = json.dumps({"image": b64(photo(indexed, "moon").read_bytes()), "k": 1})
    response = client.post("/api/search", data=body, content_type="text/plain")
    assert assert_results(response.get_json(), k=1)[0]["name"] == "moon.jpg"


def test_search_multipart_upload_with_params(client, indexed):
    with photo(indexed, "chelsea").open("rb") as f:
        response = client.post("/api/search?min_score=-1", data={"image": (f, "query.jpg"), "k": "3"})
    results = assert_results(response.get_json(), k=3)
    assert results[0]["name"] == "chelsea.jpg"


def test_search_raw_image_body(client, indexed):
    response = client.post("/api/search?k=2", data=photo(indexed, "coins").read_bytes(), content_type="image/jpeg")
    assert assert_results(response.get_json(), k=2)[0]["name"] == "coins.jpg"


def test_search_filters(client, indexed):
    image = b64(photo(indexed, "astronaut").read_bytes())
    everything = assert_results(client.post("/api/search", json={"image": image, "k": 50}).get_json())
    cut = everything[2]["score"] - 1e-5  # scores are rounded to 6 decimals
    filtered = client.post("/api/search", json={"image": image, "k": 50, "min_score": cut}).get_json()
    assert [r["id"] for r in filtered["results"]] == [r["id"] for r in everything[:3]]
    capped = client.post("/api/search", json={"image": image, "max_score": 0.999}).get_json()
    assert "astronaut.jpg" not in [r["name"] for r in capped["results"]]
    text = client.post("/api/search", json={"image": image, "text": "coffee"}).get_json()
    assert [r["name"] for r in text["results"]] == ["coffee.jpg"]


@pytest.mark.parametrize(("body", "words"), [
    ({"image": "not base64!!"}, ["base64"]),
    ({"image": "QUJDQ"}, ["base64"]),
    ({"image": "data:image/png,rawdata"}, ["data url"]),
    ({"image": 42}, ["string"]),
    ({}, ["no image"]),
    ({"image": ""}, ["empty"]),
    ({"image": b64(b"hello, not an image")}, ["not a usable image", "not a recognised image format"]),
    ({"image": b64(bomb_png())}, ["decompression bomb"]),
    ({"image": "AAAA", "k": 0}, ["'k'"]),
    ({"image": "AAAA", "k": 1001}, ["'k'"]),
    ({"image": "AAAA", "k": "ten"}, ["'k'"]),
    ({"image": "AAAA", "k": True}, ["'k'"]),
    ({"image": "AAAA", "k": 2.5}, ["'k'"]),
    ({"image": "AAAA", "min_score": 2}, ["min_score"]),
    ({"image": "AAAA", "max_score": "nan"}, ["max_score"]),
    ({"image": "AAAA", "min_score": [0.5]}, ["min_score"]),
    ({"image": "AAAA", "min_score": 10**400}, ["min_score"]),
    ({"image": "AAAA", "k": 10**400}, ["'k'"]),
    ({"image": "AAAA", "text": 7}, ["text"]),
    ({"image": "AAAA", "text": "x" * 201}, ["text"]),
])
def test_search_bad_input_is_400(client, body, words):
    assert_error(client.post("/api/search", json=body), 400, *words)


def test_search_corrupt_image_is_400(client, indexed):
    truncated = photo(indexed, "coffee").read_bytes()[:2000]
    assert_error(client.post("/api/search", json={"image": b64(truncated)}), 400, "truncated")
    upload = {"image": (io.BytesIO(b"GIF89a garbage"), "x.gif")}
    assert_error(client.post("/api/search", data=upload), 400, "not a usable image")


def test_search_invalid_json_is_400(client):
    assert_error(client.post("/api/search", data="{bad", content_type="application/json"), 400, "not valid JSON")
    assert_error(client.post("/api/search", json=["image"]), 400, "must be an object")
    assert_error(client.post("/api/search", data=b"\xff\xfe", content_type="application/json"), 400, "JSON")
    assert_error(client.post("/api/search", data="[" * 100_000, content_type="application/json"), 400, "JSON")
    huge = '{"image": "AAAA", "k": %s}' % ("9" * 5000)
    assert_error(client.post("/api/search", data=huge, content_type="application/json"), 400, "JSON")


def test_search_multipart_without_image_is_400(client):
    assert_error(client.post("/api/search", data={"k": "3"}), 400, "no image")


def test_upload_limit_is_413_json(indexed):
    app = create_app(indexed, indexed.settings.replace(max_upload_mb=0.01))  # 10 KiB
    client = app.test_client()
    big = photo(indexed, "astronaut").read_bytes()
    assert len(big) > 20_000
    assert_error(client.post("/api/search", data={"image": (io.BytesIO(big), "a.jpg")}), 413, "0.01 MB")
    assert_error(client.post("/api/search", json={"image": b64(big)}), 413)
    assert_error(client.post("/api/search", data=big, content_type="image/jpeg"), 413)
    # Just over the image limit, but within the body allowance for base64: still refused.
    assert_error(client.post("/api/search", json={"image": b64(b"\0" * 10_600)}), 413)


# -- images: record, similar, thumbnail, file ------------------------------------------------------
def test_image_record(client, indexed):
    record = record_of(indexed, "coffee")
    body = client.get(f"/api/images/{record.id}").get_json()
    assert body == {"id": record.id, "path": record.path, "paths": [record.path], "name": "coffee.jpg",
                    "folder": record.folder, "size": record.size, "width": record.width, "height": record.height,
                    "mtime": record.mtime_ns / 1e9, "thumbnail_url": f"/api/images/{record.id}/thumbnail",
                    "image_url": f"/api/images/{record.id}/file"}
    assert_error(client.get("/api/images/0123456789abcdef"), 404, "0123456789abcdef")


def test_one_json_shape_for_hits_and_records_with_undecodable_names(client):
    """A name that is not UTF-8 is display text plus its raw bytes in base64 (path_bytes), in hits and records."""
    path = os.fsdecode(b"/photos/caf\xe9.jpg")
    record = ImageRecord(id="abc", paths=(path,), ctime_ns=0, inode=0, size=5,
                         mtime_ns=1_500_000_000, hash="h", width=3, height=2)
    with client.application.test_request_context():
        as_record, as_hit = record_json(record), hit_json(Hit(record, 0.5))
    assert as_record["path"] == "/photos/caf\ufffd.jpg" and as_record["name"] == "caf\ufffd.jpg"
    assert base64.b64decode(as_record["path_bytes"]) == b"/photos/caf\xe9.jpg"
    assert as_record["paths"] == ["/photos/caf\ufffd.jpg"] and as_record["mtime"] == 1.5
    assert as_hit == {**as_record, "score": 0.5}
    json.dumps(as_hit, ensure_ascii=False).encode("utf-8")  # no lone surrogates left


def test_similar_refines_by_stored_vector(client, indexed):
    record = record_of(indexed, "chelsea")
    results = assert_results(client.get(f"/api/images/{record.id}/similar?k=3").get_json(), k=3)
    assert results[0]["id"] == record.id and results[0]["score"] == pytest.approx(1.0, abs=1e-5)
    cut = results[1]["score"] - 1e-5
    filtered = client.get(f"/api/images/{record.id}/similar?k=10&min_score={cut}").get_json()["results"]
    assert [r["id"] for r in filtered] == [r["id"] for r in results[:2]]
    text = client.get(f"/api/images/{record.id}/similar?text=moon").get_json()["results"]
    assert [r["name"] for r in text] == ["moon.jpg"]


def test_similar_errors(client, indexed):
    record = record_of(indexed, "chelsea")
    assert_error(client.get("/api/images/feedfacefeedface/similar"), 404)
    assert_error(client.get(f"/api/images/{record.id}/similar?k=-1"), 400, "'k'")
    assert_error(client.get(f"/api/images/{record.id}/similar?min_score=abc"), 400, "min_score")
    # Engine.similar also resolves paths; the API takes ids only.
    assert_error(client.get(f"/api/images/{quote(record.path, safe='')}/similar"), 404)
    assert_error(client.get("/api/images/chelsea.jpg/similar"), 404)


def test_thumbnail_is_a_cached_small_jpeg(client, indexed):
    record = record_of(indexed, "astronaut")
    response = client.get(f"/api/images/{record.id}/thumbnail")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    with Image.open(io.BytesIO(response.data)) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) == THUMBNAIL_SIZE
    assert "max-age" in response.headers["Cache-Control"] and "private" in response.headers["Cache-Control"]
    etag = response.headers["ETag"]
    cached = list((cache_dir() / "thumbnails").glob(f"{record.id}-*.jpg"))
    assert len(cached) == 1
    made = cached[0].stat().st_mtime_ns
    again = client.get(f"/api/images/{record.id}/thumbnail", headers={"If-None-Match": etag})
    assert again.status_code == 304 and cached[0].stat().st_mtime_ns == made


def test_thumbnail_follows_a_changed_file(client, indexed):
    record = record_of(indexed, "moon")
    path = Path(record.path)
    first = client.get(f"/api/images/{record.id}/thumbnail").headers["ETag"]
    stat = path.stat()
    try:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
        second = client.get(f"/api/images/{record.id}/thumbnail")
        assert second.status_code == 200 and second.headers["ETag"] != first
        cached = list((cache_dir() / "thumbnails").glob(f"{record.id}-*.jpg"))
        assert len(cached) == 1  # the stale one was removed
    finally:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_file_serves_the_indexed_file(client, indexed):
    record = record_of(indexed, "rocket")
    response = client.get(f"/api/images/{record.id}/file")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert response.data == Path(record.path).read_bytes()
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get(f"/api/images/{record.id}/file", headers={"If-None-Match": response.headers["ETag"]}
                      ).status_code == 304


@pytest.mark.parametrize("url", [
    "/api/images/..%2f..%2fetc%2fpasswd/file",
    "/api/images/..%2F..%2F..%2F..%2Fetc%2Fpasswd/file",
    "/api/images/%2e%2e/file",
    "/api/images/..%5c..%5cetc%5cpasswd/file",
    "/api/images/%2fetc%2fpasswd/file",
    "/api/images/etc/passwd/file",
    "/api/images/../../etc/passwd/file",
    "/api/images/%00/file",
    "/api/images/..%2f..%2fetc%2fpasswd/thumbnail",
    "/api/images/%2Fetc%2Fpasswd",
])
def test_traversal_attempts_are_404(client, url):
    response = client.get(url)
    assert_error(response, 404)
    assert b"root:" not in response.data


def test_files_are_served_only_while_they_are_the_indexed_regular_file(engine, tmp_path):
    """A record whose file vanished, or was replaced by a symlink (to anything), serves nothing."""
    engine.store.initialize(engine.identity)
    gone, link = tmp_path / "gone.jpg", tmp_path / "link.jpg"
    link.symlink_to("/etc/passwd")
    records = [ImageRecord(id=new_image_id(), paths=(str(p),), ctime_ns=0, inode=0, size=1,
                           mtime_ns=1, hash="x", width=1, height=1) for p in (gone, link)]
    engine.store.upsert(records, unit_vectors(2, engine.identity.dims))
    client = create_app(engine, engine.settings).test_client()
    for record in records:
        assert_error(client.get(f"/api/images/{record.id}/file"), 404, "no longer")
        assert_error(client.get(f"/api/images/{record.id}/thumbnail"), 404, "no longer")
        assert client.get(f"/api/images/{record.id}").status_code == 200


def unit_vectors(n: int, dims: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dims)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# -- duplicates ----------------------------------------------------------------------------------
def duplicates_client(engine, tmp_path, photo_dir):
    """An app over three real files, two of which have equal vectors; returns (client, their records)."""
    engine.store.initialize(engine.identity)
    names = ["coffee", "chelsea", "rocket"]
    records = []
    for name in names:
        path = tmp_path / f"{name}.jpg"
        shutil.copy(photo_dir / f"{name}.jpg", path)
        records.append(ImageRecord(id=new_image_id(), paths=(str(path),), ctime_ns=0, inode=0,
                                   size=path.stat().st_size, mtime_ns=path.stat().st_mtime_ns, hash=name,
                                   width=1, height=1))
    vectors = unit_vectors(3, engine.identity.dims)
    vectors[1] = vectors[0]  # coffee and chelsea are "the same picture"
    engine.store.upsert(records, vectors)
    return create_app(engine, engine.settings).test_client(), records


def test_duplicates(engine, tmp_path, photo_dir):
    client, records = duplicates_client(engine, tmp_path, photo_dir)
    body = client.get("/api/duplicates?threshold=0.99").get_json()
    assert body["threshold"] == 0.99
    [group] = body["groups"]
    keeper = max(records[:2], key=lambda r: r.size)  # equal resolutions: the larger file is kept
    assert group["keep"] == keeper.path and group["reason"] == "larger file" and group["kind"] == "near-duplicate"
    assert [image["kind"] for image in group["images"]] == ["keeper", "near-duplicate"]
    assert sorted(image["name"] for image in group["images"]) == ["chelsea.jpg", "coffee.jpg"]
    assert group["images"][1]["score"] == pytest.approx(1.0) and group["images"][0]["reference"] is False
    assert group["images"][0]["thumbnail_url"].endswith("/thumbnail")
    assert all(os.path.exists(r.path) for r in records)  # the API deletes and moves nothing
    assert client.get("/api/duplicates").get_json()["threshold"] == 0.95
    for bad in ("abc", "0.1", "1.5", "inf"):
        assert_error(client.get(f"/api/duplicates?threshold={bad}"), 400, "threshold")


def test_duplicates_answer_is_the_documented_shape(engine, tmp_path, photo_dir):
    """tests/test_api_schema.py sees only empty groups (its vectors are random); this checks a real group."""
    jsonschema_rs = pytest.importorskip("jsonschema_rs")  # schemathesis' validator
    client, _ = duplicates_client(engine, tmp_path, photo_dir)
    spec = client.get("/api/openapi.json").get_json()
    schema = {"$ref": "#/components/schemas/Duplicates", "components": spec["components"]}
    body = client.get("/api/duplicates?threshold=0.99").get_json()
    assert len(body["groups"]) == 1
    jsonschema_rs.Draft202012Validator(schema).validate(body)


# -- index jobs ----------------------------------------------------------------------------------
def wait_for_job(client, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").get_json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s")


def test_index_job_indexes_and_reports_bad_files(engine, tmp_path, photo_dir):
    folder = tmp_path / "new"
    folder.mkdir()
    for name in ("rocket", "coins"):
        shutil.copy(photo_dir / f"{name}.jpg", folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    client = create_app(engine, engine.settings).test_client()
    response = client.post("/api/index", json={"paths": [str(folder)]})
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    assert response.headers["Location"] == f"/api/jobs/{job_id}" == response.get_json()["status_url"]
    job = wait_for_job(client, job_id)
    assert job["state"] == "done", job
    assert job["done"] == job["total"] == 3 and job["eta_s"] == 0
    assert [e["path"] for e in job["errors"]] == [str((folder / "broken.jpg").resolve())]
    assert job["errors"][0]["reason"]
    assert job["report"]["indexed"] == 2 and engine.store.count() == 2
    assert [j["job_id"] for j in client.get("/api/jobs").get_json()["jobs"]] == [job_id]
    # Finished: DELETE is a no-op that answers 200 with the final state.
    cancelled = client.delete(f"/api/jobs/{job_id}")
    assert cancelled.status_code == 200 and cancelled.get_json()["state"] == "done"


@pytest.mark.parametrize("body", [{}, {"paths": []}, {"paths": "/tmp"}, {"paths": [3]}, {"paths": [""]},
                                  {"paths": ["/no/such/folder"]}, {"paths": ["/etc/passwd"]},
                                  {"paths": ["/tmp\x00/x"]}, {"paths": ["/tmp"] * 101}])
def test_index_accepts_only_existing_folders(client, body):
    assert_error(client.post("/api/index", json=body), 400)


def test_index_needs_json(client):
    assert_error(client.post("/api/index", data="paths=/tmp"), 415, "JSON")
    assert_error(client.post("/api/index", data="{nope", content_type="application/json"), 400, "JSON")


def test_unknown_job_is_404(client):
    assert_error(client.get("/api/jobs/nope"), 404, "nope")
    assert_error(client.delete("/api/jobs/nope"), 404)


class BlockingIndex:
    """Stands in for Engine.index: reports progress, then waits until cancelled."""

    def __init__(self):
        self.started = threading.Event()

    def __call__(self, roots, progress=None, cancel=None, prune_missing=False) -> IndexReport:
        progress(IndexProgress(1, 10, "/x/one.jpg", 9.0))
        self.started.set()
        assert cancel.wait(10), "never cancelled"
        return IndexReport(indexed=1, cancelled=True)


def test_cancel_running_and_queued_jobs(engine, monkeypatch, tmp_path):
    blocking = BlockingIndex()
    monkeypatch.setattr(engine, "index", blocking)
    client = create_app(engine, engine.settings).test_client()
    first = client.post("/api/index", json={"paths": [str(tmp_path)]}).get_json()["job_id"]
    second = client.post("/api/index", json={"paths": [str(tmp_path)]}).get_json()["job_id"]
    assert blocking.started.wait(10)
    running = client.get(f"/api/jobs/{first}").get_json()
    assert running["state"] == "running" and (running["done"], running["total"], running["eta_s"]) == (1, 10, 9.0)
    queued = client.get(f"/api/jobs/{second}").get_json()
    assert queued["state"] == "queued"
    response = client.delete(f"/api/jobs/{second}")
    assert response.status_code == 200 and response.get_json()["state"] == "cancelled"
    response = client.delete(f"/api/jobs/{first}")
    assert response.status_code == 202
    assert wait_for_job(client, first, timeout=10)["state"] == "cancelled"


def test_failed_job_reports_why(engine, monkeypatch, tmp_path):
    def broken(roots, progress=None, cancel=None, prune_missing=False):
        raise StoreError("the index is read-only")

    monkeypatch.setattr(engine, "index", broken)
    client = create_app(engine, engine.settings).test_client()
    job_id = client.post("/api/index", json={"paths": [str(tmp_path)]}).get_json()["job_id"]
    job = wait_for_job(client, job_id, timeout=10)
    assert job["state"] == "failed" and job["error"] == "the index is read-only"


# -- engine errors map to statuses ------------------------------------------------------------------
@pytest.mark.parametrize(("error", "status"), [
    (StoreError("Elasticsearch is away"), 503),
    (WeightsError("no weights"), 503),
    (IdentityMismatch("index built by fc1"), 409),
    (LookupError("gone"), 404),
    (KeyError("bug"), 500),
    (RuntimeError("bug"), 500),
])
def test_engine_errors_map_to_statuses(engine, monkeypatch, error, status):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(engine, "info", fail)
    client = create_app(engine, engine.settings).test_client()
    body = assert_error(client.get("/api/health"), status)
    if status == 500:
        assert "bug" not in body["detail"]  # internals stay in the server log


# -- token, host, origin, CORS ---------------------------------------------------------------------
def test_token_is_required_and_accepted(indexed):
    client = create_app(indexed, indexed.settings.replace(api_token="s3cret-tøken")).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-tøken"},
                    {"Authorization": "Bearer"}):
        assert_error(client.get("/api/jobs", headers=headers), 401, "token")
        # Health needs no token (container health checks), but tells only whether the server is ready.
        assert client.get("/api/health", headers=headers).get_json() == {"status": "ok", "model_loaded": True}
    challenge = client.get("/api/jobs").headers["WWW-Authenticate"]
    assert challenge.lower().startswith("bearer")
    ok = {"Authorization": "Bearer s3cret-tøken".encode().decode("latin-1")}
    assert client.get("/api/jobs", headers=ok).status_code == 200
    assert client.get("/api/health", headers=ok).get_json()["count"] == len(INDEXED)
    assert_error(client.get("/api/openapi.json"), 401)
    assert client.get("/api/openapi.json", headers=ok).get_json()["security"] == [{"bearerAuth": []}]
    assert client.get("/").status_code == 200  # the page itself asks for the token


def test_no_token_no_auth(client):
    assert client.get("/api/health", headers={"Authorization": "Bearer anything"}).status_code == 200
    assert client.get("/api/openapi.json").get_json()["security"] == []


def test_loopback_server_refuses_foreign_host_names(client, indexed):
    assert_error(client.get("/api/health", headers={"Host": "evil.example:5000"}), 400, "Host")
    for host in ("localhost:5000", "127.0.0.1:5000", "[::1]:5000", "127.0.0.2"):
        assert client.get("/api/health", headers={"Host": host}).status_code == 200, host
    exposed = indexed.settings.replace(api_host="0.0.0.0", api_token="t")
    other = create_app(indexed, exposed).test_client()
    assert other.get("/api/health", headers={"Host": "nas.local:5000", "Authorization": "Bearer t"}).status_code == 200


def test_cross_origin_writes_are_refused(client, tmp_path):
    evil = {"Origin": "http://evil.example"}
    assert_error(client.post("/api/index", json={"paths": [str(tmp_path)]}, headers=evil), 403, "cross-origin")
    assert_error(client.post("/api/search", json={"image": "AAAA"}, headers=evil), 403)
    assert_error(client.delete("/api/jobs/x", headers=evil), 403)
    same = {"Origin": "http://localhost"}
    assert client.post("/api/search", json={"image": "@@"}, headers=same).status_code == 400  # passed the guard


def test_cors_is_off_by_default(client):
    response = client.get("/api/health", headers={"Origin": "http://a.example"})
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers
    preflight = client.options("/api/search", headers={"Origin": "http://a.example",
                                                       "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_cors_for_configured_origins_only(indexed):
    settings = indexed.settings.replace(api_cors_origins="http://a.example, http://b.example:8080/",
                                        api_token="t")
    client = create_app(indexed, settings).test_client()
    auth = {"Authorization": "Bearer t"}
    allowed = client.get("/api/health", headers={"Origin": "http://b.example:8080", **auth})
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://b.example:8080"
    assert "Origin" in allowed.headers["Vary"]
    denied = client.get("/api/health", headers={"Origin": "http://c.example", **auth})
    assert "Access-Control-Allow-Origin" not in denied.headers
    # Errors carry the header too, so the calling page can read them.
    unauthorized = client.get("/api/jobs", headers={"Origin": "http://a.example"})
    assert unauthorized.status_code == 401 and unauthorized.headers["Access-Control-Allow-Origin"] == "http://a.example"
    # Preflight: no credentials are sent (so no token check), methods and headers are announced.
    preflight = client.options("/api/search", headers={
        "Origin": "http://a.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://a.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    other = client.options("/api/search", headers={"Origin": "http://c.example",
                                                    "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in other.headers
    # An allowed origin may also write.
    write = client.post("/api/search", json={"image": "@@"}, headers={"Origin": "http://a.example", **auth})
    assert write.status_code == 400
    assert_error(client.options("/api/nowhere", headers={"Origin": "http://a.example",
                                                          "Access-Control-Request-Method": "GET"}), 404)


def test_cors_preflight_of_the_original_client(indexed):
    """The original client sends `Access-Control-Allow-Origin: *` as a request header, so its preflight asks
    for it; an allowed origin gets it, and the POST that follows carries the CORS headers."""
    client = create_app(indexed, indexed.settings.replace(api_cors_origins="http://127.0.0.1:8080")).test_client()
    asked = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "access-control-allow-origin,content-type"}
    preflight = client.options("/api/search", headers={"Origin": "http://127.0.0.1:8080", **asked})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8080"
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"access-control-allow-origin", "content-type"} <= allowed
    image = b64(photo(indexed, "moon").read_bytes())
    post = client.post("/api/search", json={"image": image}, headers={
        "Origin": "http://127.0.0.1:8080", "Access-Control-Allow-Origin": "*"})
    assert post.status_code == 200 and post.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8080"
    assert post.get_json()["images_data"]
    # Another origin: no CORS answer to its preflight, and its POST is refused.
    other = client.options("/api/search", headers={"Origin": "http://127.0.0.1:9090", **asked})
    assert "Access-Control-Allow-Origin" not in other.headers
    assert_error(client.post("/api/search", json={"image": image}, headers={"Origin": "http://127.0.0.1:9090"}), 403)
