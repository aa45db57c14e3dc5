"""The /api routes: search, images (record, similar, thumbnail, file), index jobs, duplicates, health, openapi.

Files are only ever served for indexed ids, never by a client path.
"""

from __future__ import annotations

import mimetypes
import os
import time

from flask import Blueprint, Response, jsonify, request, send_file, url_for
from werkzeug.exceptions import BadRequest, NotFound, UnsupportedMediaType

from core.api.compat import ORIGINAL_MIN_SCORE, is_original_request, original_results
from core.api.context import ApiContext, ctx
from core.api.errors import error_response
from core.api.files import indexed_file, indexed_record, thumbnail_file
from core.api.parsing import (
    DEFAULT_K,
    MAX_K,
    WORDS_ONLY_K,
    float_field,
    has_image,
    int_field,
    json_body,
    photo_params,
    query_image,
    request_fields,
    search_params,
)
from core.api.security import token_given
from core.api.shapes import image_links, record_json, results_payload
from core.duplicates import Group, group_json, variant_json
from core.model import WeightsError, imagenet_candidates, resolve_weights
from core.store.annotations import InvalidTag

MAX_INDEX_PATHS = 100
DUPLICATE_THRESHOLD = (0.5, 1.0)  # lower thresholds make near_pairs quadratic in the index size
THUMB_MAX_AGE_S = 3600

api = Blueprint("api", __name__, url_prefix="/api")


@api.get("/health")
def health() -> Response:
    """Needs no token. 200 when searches can run: the index answers and the model is built or its weights are
    on this computer; 503 with the reason otherwise. Backend, count, model and version only with the token
    (when the server has one)."""
    context = ctx()
    engine = context.engine
    info = engine.info()  # raises StoreError (503) when the index does not answer
    reason = model_unavailable(context)
    if reason is not None:
        return error_response(503, "Model unavailable", reason)
    if not token_given(context):
        return jsonify(status="ok", model_loaded=engine.model_loaded)
    return jsonify(status="ok", backend=info["backend"], count=info["count"], model=info["model"],
                   model_label=info["model_label"], model_loaded=engine.model_loaded, runtime=info["runtime"],
                   version=info["version"])


def model_unavailable(context: ApiContext) -> str | None:
    """Why the model cannot be built now, or None when it is built or can be: checks that the weights resolve
    to a file on this computer (core.model.resolve_weights, no network built, no TensorFlow imported)."""
    engine = context.engine
    if engine.model_loaded:
        return None
    if context.model_error is not None:
        return context.model_error
    descriptor = engine.identity.descriptor
    try:
        weights = resolve_weights(engine.settings.weights, descriptor, engine.settings.labels)
    except WeightsError as exc:
        return str(exc)
    if weights.spec == "imagenet" and weights.path is None:
        looked = ", ".join(str(p) for p in imagenet_candidates(descriptor, engine.settings.labels))
        return (f"the VGG16 ImageNet weights are not on this computer (looked for {looked}); they are downloaded "
                "when the model is first built, or give a weights file with --weights PATH (IMAGE_SEARCH_WEIGHTS)")
    return None


@api.post("/search")
def search() -> Response:
    """Search with an uploaded image (JSON base64, multipart or raw bytes); core.api.compat: the original client."""
    fields = request_fields()
    original = is_original_request(fields)
    photo = photo_params(fields)
    variants = bool_param(fields, "variants")  # checked even where unused (a words-only search)
    if not original and not has_image(fields) and (fields.get("text") is not None or photo.active()):
        return words_only(fields, photo)
    k, filters = search_params(fields, default_min_score=ORIGINAL_MIN_SCORE if original else None)
    image = query_image(fields)
    started = time.perf_counter()
    hits = ctx().engine.search(image, k, filters, photo, variants=variants)
    payload = annotate(with_variants(results_payload(hits, started), hits))
    return original_results(hits, payload) if original else jsonify(payload)


def words_only(fields, photo) -> Response:
    """A search without an image: images matching `text` (names, folders, tags, camera) and the date and
    camera filters, newest first: {"query": null, "text", "results" (score null), "took_ms"}."""
    k = int_field(fields, "k", WORDS_ONLY_K, 1, MAX_K)
    _, filters = search_params({**fields, "k": DEFAULT_K})  # the text checks of an image search
    started = time.perf_counter()
    records = ctx().engine.search_words(filters.text, k, photo)
    results = [{**record_json(r), "score": None} for r in records]
    return annotated({"query": None, "text": filters.text, "results": results,
                      "took_ms": round((time.perf_counter() - started) * 1000, 3)})


def annotated(payload: dict) -> Response:
    """The payload (annotate) as the response."""
    return jsonify(annotate(payload))


def annotate(payload: dict) -> dict:
    """The payload with each result's `tags`, `labels`, `taken` (ISO 8601) and `camera` beside its record fields."""
    notes = ctx().engine.annotations_of(r["id"] for r in payload["results"])
    for result in payload["results"]:
        note = notes.get(result["id"])
        result.update(tags=list(note.tags) if note else [], labels=list(note.labels) if note else [],
                      taken=note.taken if note else None,
                      camera=note.camera if note else None)
    return payload


@api.get("/images/<image_id>")
def image_record(image_id: str) -> Response:
    """The indexed record of an id."""
    return jsonify(record_json(indexed_record(image_id)))


@api.get("/images/<image_id>/similar")
def similar(image_id: str) -> Response:
    """Search by the stored vector of an indexed image (refine); nothing is re-extracted."""
    k, filters = search_params(request.args)
    photo = photo_params(request.args)
    variants = bool_param(request.args, "variants")
    record = indexed_record(image_id)  # by id only: Engine.similar would also take a path
    started = time.perf_counter()
    hits = ctx().engine.similar(record.id, k, filters, photo, variants=variants)
    return annotated(with_variants(results_payload(hits, started), hits))


def bool_param(fields, name: str) -> bool:
    """An optional true/false field (JSON booleans; "true"/"false"/"1"/"0" in query strings and forms)."""
    value = fields.get(name, False)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        value = value.lower() in ("true", "1")
    if not isinstance(value, bool):
        raise BadRequest(f"'{name}' must be true or false")
    return value


def with_variants(payload: dict, hits) -> dict:
    """The payload with `variant` on each result found through a mirrored or rotated query."""
    for result, hit in zip(payload["results"], hits, strict=True):
        result.update(variant_json(hit))
    return payload


@api.get("/images/<image_id>/tags")
def image_tags(image_id: str) -> Response:
    """The tags of an indexed image: {"id", "tags"}."""
    record = indexed_record(image_id)
    return jsonify(id=record.id, tags=ctx().engine.tags(record.id))


@api.put("/images/<image_id>/tags")
def put_image_tags(image_id: str) -> Response:
    """Replace the tags of an indexed image with {"tags": [...]}; answers {"id", "tags"} as stored (trimmed,
    one per folded spelling). 400 for a tag with a comma or a control character (nothing written)."""
    record = indexed_record(image_id)
    tags = json_body().get("tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise BadRequest('send JSON {"tags": ["a tag", ...]}')
    try:
        stored = ctx().engine.set_tags(record.id, tags)
    except InvalidTag as exc:
        raise BadRequest(str(exc)) from None
    return jsonify(id=record.id, tags=stored)


@api.get("/tags")
def all_tags() -> Response:
    """Every tag with how many images carry it, most used first: {"tags": [{"tag", "count"}]}."""
    return jsonify(tags=[{"tag": t, "count": n} for t, n in ctx().engine.tag_counts().items()])


@api.get("/images/<image_id>/thumbnail")
def thumbnail(image_id: str) -> Response:
    """The cached JPEG thumbnail (at most core.thumbnails.THUMBNAIL_SIZE px a side), privately cacheable for
    THUMB_MAX_AGE_S."""
    record = indexed_record(image_id)
    path = thumbnail_file(record)
    response = send_file(path, mimetype="image/jpeg", etag=path.stem, conditional=True, max_age=THUMB_MAX_AGE_S)
    response.cache_control.public = False
    response.cache_control.private = True
    return response


@api.get("/images/<image_id>/file")
def image_file(image_id: str) -> Response:
    """The indexed file itself, declared as an image type only when it is one (never HTML or SVG)."""
    record = indexed_record(image_id)
    stat = indexed_file(record)
    guessed = mimetypes.guess_type(record.name)[0] or ""
    # Only image types are declared; anything else goes out as opaque bytes (with nosniff) so that a
    # file named .html can never be rendered as a page of this origin.
    mimetype = guessed if guessed.startswith("image/") and guessed != "image/svg+xml" else "application/octet-stream"
    response = send_file(record.path, mimetype=mimetype, conditional=True, max_age=0,
                         etag=f"{record.id}-{stat.st_mtime_ns}-{stat.st_size}", last_modified=stat.st_mtime)
    response.cache_control.private = True
    return response


@api.post("/index")
def start_index() -> tuple[Response, int, dict]:
    """Queue an index job for existing folders: 202 with the job's URL in Location."""
    if not request.is_json:
        raise UnsupportedMediaType('send JSON with Content-Type application/json: {"paths": ["/a/folder"]}')
    body = json_body()
    paths, prune_missing = body.get("paths"), body.get("prune_missing", False)
    if not isinstance(prune_missing, bool):
        raise BadRequest("'prune_missing' must be true or false")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        raise BadRequest("'paths' must be a non-empty list of folder paths")
    if len(paths) > MAX_INDEX_PATHS:
        raise BadRequest(f"at most {MAX_INDEX_PATHS} paths per job")
    folders = [existing_folder(p) for p in paths]
    job = ctx().jobs.submit_index(folders, prune_missing=prune_missing)
    status_url = url_for("api.job_status", job_id=job.id)
    return jsonify(job_id=job.id, state=job.state, status_url=status_url), 202, {"Location": status_url}


@api.post("/labels")
def start_labels() -> tuple[Response, int, dict]:
    """Queue a labels pass (ImageNet labels for the images indexed before the labels setting was on): 202 with
    the job's URL in Location; 503 when the setting is off."""
    context = ctx()
    context.engine.require_labels()
    job = context.jobs.submit_labels()
    status_url = url_for("api.job_status", job_id=job.id)
    return jsonify(job_id=job.id, state=job.state, status_url=status_url), 202, {"Location": status_url}


@api.get("/jobs")
def list_jobs() -> Response:
    """Every job of this app, oldest first."""
    return jsonify(jobs=ctx().jobs.all())


@api.get("/jobs/<job_id>")
def job_status(job_id: str) -> Response:
    """One job's state and progress."""
    job = ctx().jobs.get(job_id)
    if job is None:
        raise NotFound(f"no job has the id {job_id!r}")
    return jsonify(job)


@api.delete("/jobs/<job_id>")
def cancel_job(job_id: str) -> tuple[Response, int]:
    """Cancel a job: 200 when it is over, 202 while a running one stops after its current file."""
    job = ctx().jobs.cancel(job_id)
    if job is None:
        raise NotFound(f"no job has the id {job_id!r}")
    # 202: a running job stops after its current file; poll the job for its final state.
    return jsonify(job), 202 if job["state"] in ("queued", "running") else 200


@api.get("/duplicates")
def duplicates() -> Response:
    """Groups of duplicates at a similarity threshold in DUPLICATE_THRESHOLD (default 0.95), each with its
    suggested keeper and reason (core.duplicates.group_json, each image with its links); reference folders and
    keeper rules from the settings, "not duplicates" decisions applied. `variants=true` also matches mirrored
    and rotated copies (decodes and embeds every indexed image 4 more times: slow). Deletes and moves nothing."""
    low, high = DUPLICATE_THRESHOLD
    threshold = float_field(request.args, "threshold", low, high, default=0.95)
    variants = bool_param(request.args, "variants")
    groups = ctx().engine.duplicate_groups(threshold, variants=variants)
    return jsonify(threshold=threshold, variants=variants, groups=[group_payload(group) for group in groups])


def group_payload(group: Group) -> dict:
    """group_json with each image's thumbnail_url and image_url (needs a request context)."""
    shown = group_json(group)
    links = [image_links(m.record) for m in group.members]
    return {**shown, "images": [{**image, **link} for image, link in zip(shown["images"], links, strict=True)]}


@api.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document of this server (resources/web/openapi.json, see app.load_openapi)."""
    return jsonify(ctx().openapi)


def existing_folder(path: str) -> str:
    """The real path of an existing folder named by a client; BadRequest otherwise."""
    try:
        expanded = os.path.expanduser(path)
        if os.path.isdir(expanded):
            return os.path.realpath(expanded)
    except (OSError, ValueError):  # a NUL byte, a name too long, ...
        pass
    raise BadRequest(f"not an existing folder: {path!r}")
