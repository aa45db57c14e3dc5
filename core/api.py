"""The HTTP API and the web page: a Flask app over one Engine, and a server thread to embed or run headless.

Every response an /api client can get is JSON (errors too: {"error", "detail", "status"}), except the
image bytes of /thumbnail and /file. Files are only ever served for indexed ids, never by a client path.
The description of all of it is resources/web/openapi.json, served at /api/openapi.json.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
import math
import mimetypes
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, jsonify, request, send_file, url_for
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import (
    BadRequest,
    Forbidden,
    HTTPException,
    InternalServerError,
    NotFound,
    RequestEntityTooLarge,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server, select_address_family

from core import __version__
from core.config import Settings
from core.images import ImageError
from core.jobs import JobRegistry
from core.model import WeightsError
from core.store.base import Hit, IdentityMismatch, ImageRecord, SearchFilter, StoreError
from core.thumbnails import ThumbnailCache

if TYPE_CHECKING:
    from core.engine import Engine

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "resources" / "web"
DEFAULT_K = 10
MAX_K = 1000
MAX_TEXT = 200
MAX_INDEX_PATHS = 100
DUPLICATE_THRESHOLD = (0.5, 1.0)  # lower thresholds make near_pairs quadratic in the index size
THUMB_SIZE = 256
THUMB_MAX_AGE_S = 3600
MB = 1024 * 1024
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
EXTENSION = "image_search"


class ServerStartError(RuntimeError):
    """The API server cannot start: the address is taken or not ours, or exposing it needs a token."""


# ---------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------
@dataclass
class ApiContext:
    """What the request handlers share; one per app, kept in app.extensions."""

    engine: Engine
    settings: Settings
    jobs: JobRegistry
    thumbnails: ThumbnailCache
    upload_limit: int  # bytes of image data
    token: bytes | None
    cors_origins: frozenset[str]
    loopback_only: bool  # bound to loopback: answer only requests addressed to a loopback host
    openapi: dict


def create_app(engine: Engine, settings: Settings) -> Flask:
    """The Flask app for `engine`: the /api routes, the web page at /, and JSON errors everywhere."""
    app = Flask(__name__, static_folder=str(WEB_DIR), static_url_path="/static")
    upload_limit = int(settings.max_upload_mb * MB)
    # The body may carry the image as base64 (4/3 larger) plus a few fields; the decoded image is then
    # checked against the real limit, so one limit holds for uploads, raw bodies and base64 alike.
    body_limit = upload_limit * 4 // 3 + 64 * 1024
    app.config.update(MAX_CONTENT_LENGTH=body_limit, MAX_FORM_MEMORY_SIZE=body_limit)
    app.json.sort_keys = False  # keep "results" before "took_ms", id first, ...
    app.extensions[EXTENSION] = ApiContext(
        engine=engine,
        settings=settings,
        jobs=JobRegistry(engine.index),
        thumbnails=ThumbnailCache(Path(settings.data_dir).expanduser() / "cache" / "thumbnails", THUMB_SIZE),
        upload_limit=upload_limit,
        token=settings.api_token.encode("utf-8") if settings.api_token else None,
        cors_origins=parse_origins(settings.api_cors_origins),
        loopback_only=is_loopback(settings.api_host),
        openapi=load_openapi(settings),
    )
    register_error_handlers(app)
    app.before_request(guard_request)
    app.after_request(add_response_headers)
    app.register_blueprint(api)
    app.add_url_rule("/", "page", serve_page)
    return app


def ctx() -> ApiContext:
    return current_app.extensions[EXTENSION]


def serve_page() -> Response:
    response = send_file(WEB_DIR / "index.html", mimetype="text/html", max_age=0)
    # The page loads only its own script and style; images may also be blob: URLs (token mode).
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
    return response


# ---------------------------------------------------------------------------------------------------
# Errors: JSON for everything
# ---------------------------------------------------------------------------------------------------
def error_response(status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    response = jsonify(error=error, detail=detail, status=status)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, on_http_error)
    app.register_error_handler(ImageError, lambda e: error_response(400, "Not a usable image", e.reason))
    app.register_error_handler(LookupError, on_lookup_error)  # core.engine.NotFound is a LookupError
    app.register_error_handler(IdentityMismatch, lambda e: error_response(409, "Index model mismatch", str(e)))
    app.register_error_handler(StoreError, lambda e: error_response(503, "Index unavailable", str(e)))
    app.register_error_handler(WeightsError, lambda e: error_response(503, "Model unavailable", str(e)))
    app.register_error_handler(Exception, on_unexpected_error)


def on_http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    detail = exc.description or exc.name
    if isinstance(exc, RequestEntityTooLarge):
        detail = f"the request is larger than the limit of {ctx().settings.max_upload_mb:g} MB"
    elif isinstance(exc, NotFound) and request.url_rule is None and not request.path.startswith("/static/"):
        detail = f"no such route: {request.path}"
    # Keep the exception's own headers (Allow on 405, WWW-Authenticate on 401), but not its HTML type.
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return error_response(status, exc.name, detail, headers)


def on_lookup_error(exc: LookupError) -> Response:
    # KeyError and IndexError are LookupErrors too, but from them it's a bug of ours, not a missing image.
    if isinstance(exc, KeyError | IndexError):
        return on_unexpected_error(exc)
    return error_response(404, "Not Found", str(exc) or "not in the index")


def on_unexpected_error(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):  # pragma: no cover - routed to on_http_error by Flask
        return on_http_error(exc)
    log.exception("unexpected error in %s %s", request.method, request.path)
    return error_response(500, InternalServerError.name, "an unexpected error occurred; see the server log")


# ---------------------------------------------------------------------------------------------------
# Guards: host, token, origin, CORS
# ---------------------------------------------------------------------------------------------------
def guard_request() -> Response | None:
    """Runs before every route. Returning a response ends the request there."""
    context = ctx()
    if context.loopback_only and not is_loopback(host_name(request.host)):
        # A loopback server answers only to loopback names: this defeats DNS rebinding, where a web
        # page re-points its own domain at 127.0.0.1 to read our responses as same-origin.
        return error_response(400, "Bad Request", f"unexpected Host {request.host!r}; use localhost or 127.0.0.1")
    if request.method == "OPTIONS":
        return preflight_response(context)  # preflights never carry credentials, so they come before auth
    if request.path.startswith("/api/") and context.token is not None:
        check_token(context.token)
    if request.method in UNSAFE_METHODS:
        check_origin(context)
    return None


def check_token(token: bytes) -> None:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest takes time independent of where the strings differ: no timing oracle for the token.
    if scheme.lower() != "bearer" or not hmac.compare_digest(header_bytes(given.strip()), token):
        raise Unauthorized("send the server's token as 'Authorization: Bearer <token>'",
                           www_authenticate=WWWAuthenticate("bearer", {"realm": "image-search"}))


def header_bytes(value: str) -> bytes:
    """The raw bytes of a header value: WSGI hands them over decoded as latin-1 (so UTF-8 tokens work)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def check_origin(context: ApiContext) -> None:
    """Refuse state-changing requests sent by other sites' pages (cross-site request forgery).

    Browsers always send Origin on cross-origin POST/DELETE; non-browser clients send none.
    """
    origin = request.headers.get("Origin")
    if origin is None or origin_allowed(origin, context) or urlsplit(origin).netloc == request.host:
        return
    raise Forbidden(f"cross-origin request from {origin} refused (allow it with api_cors_origins)")


def origin_allowed(origin: str, context: ApiContext) -> bool:
    return "*" in context.cors_origins or origin.rstrip("/") in context.cors_origins


def preflight_response(context: ApiContext) -> Response | None:
    """Answer a CORS preflight for an allowed origin; anything else gets Flask's plain OPTIONS answer."""
    origin = request.headers.get("Origin")
    if not origin or not request.headers.get("Access-Control-Request-Method") or not origin_allowed(origin, context):
        return None
    adapter = current_app.url_map.bind_to_environ(request.environ)
    methods = adapter.allowed_methods()
    if not methods:
        raise NotFound()
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = ", ".join(sorted(methods))
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
    response.headers["Access-Control-Max-Age"] = "600"
    return response


def add_response_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    context = ctx()
    if context.cors_origins:
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if origin and origin_allowed(origin, context):
            response.headers["Access-Control-Allow-Origin"] = "*" if "*" in context.cors_origins else origin
    return response


def parse_origins(value: str | None) -> frozenset[str]:
    return frozenset(o.strip().rstrip("/") for o in (value or "").split(",") if o.strip())


def host_name(host: str) -> str:
    """The name part of a Host header: 'a:1' -> 'a', '[::1]:5000' -> '::1'."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------------
# Request parsing
# ---------------------------------------------------------------------------------------------------
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def raw_image_body() -> bool:
    return request.mimetype.startswith("image/") or request.mimetype == "application/octet-stream"


def json_body() -> dict:
    """The JSON object in the body, or {} when there is none. Parsed whatever the Content-Type says
    (older clients post JSON without one); invalid JSON or a non-object is a 400."""
    if request.method in ("GET", "HEAD") or request.mimetype in FORM_TYPES or raw_image_body():
        return {}
    if not request.get_data(cache=True):
        return {}
    try:
        body = json.loads(request.get_data(cache=True))
    except ValueError as exc:  # not UTF-8, not JSON, or an integer of more than 4300 digits
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the body is not usable JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("the JSON body must be an object")
    return body


def request_fields() -> dict:
    """Parameters from the query string, then form fields, then JSON body fields (a later source wins)."""
    fields: dict = dict(request.args.items())
    if request.mimetype in FORM_TYPES:
        fields.update((k, v) for k, v in request.form.items())
    fields.update(json_body())
    return fields


def int_field(fields: Mapping, name: str, default: int, low: int, high: int) -> int:
    value = fields.get(name)
    if value is None:
        return default
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise BadRequest(f"'{name}' must be an integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{name}' must be an integer")
    if not low <= value <= high:
        raise BadRequest(f"'{name}' must be between {low} and {high}, got {value}")
    return value


def float_field(fields: Mapping, name: str, low: float, high: float, default: float | None = None) -> float | None:
    value = fields.get(name)
    if value is None:
        return default
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise BadRequest(f"'{name}' must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"'{name}' must be a number")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer of hundreds of digits
        number = math.inf
    if not math.isfinite(number) or not low <= number <= high:
        raise BadRequest(f"'{name}' must be between {low:g} and {high:g}")
    return number


def search_params(fields: Mapping) -> tuple[int, SearchFilter]:
    k = int_field(fields, "k", DEFAULT_K, 1, MAX_K)
    text = fields.get("text")
    if text is not None and not isinstance(text, str):
        raise BadRequest("'text' must be a string")
    if text is not None and len(text) > MAX_TEXT:
        raise BadRequest(f"'text' must be at most {MAX_TEXT} characters")
    return k, SearchFilter(
        min_score=float_field(fields, "min_score", -1.0, 1.0),
        max_score=float_field(fields, "max_score", -1.0, 1.0),
        text=(text or "").strip() or None,
    )


def query_image(fields: Mapping) -> bytes:
    """The image to search with: a multipart file, a raw image body, or base64 in the 'image' field."""
    limit = ctx().upload_limit
    upload = request.files.get("image")
    if upload is not None:
        data = upload.read(limit + 1)
    elif raw_image_body():
        data = request.get_data()
    else:
        value = fields.get("image")
        if value is None:
            raise BadRequest('no image: send JSON {"image": "<base64>"}, a multipart "image" file, '
                             "or the image bytes with an image/* Content-Type")
        if not isinstance(value, str):
            raise BadRequest("'image' must be a base64 string")
        if len(value) * 3 // 4 > limit + 3:
            raise RequestEntityTooLarge()
        data = decode_base64(value)
    if len(data) > limit:
        raise RequestEntityTooLarge()
    if not data:
        raise BadRequest("the image is empty")
    return data


def decode_base64(text: str) -> bytes:
    """Standard or URL-safe base64, with or without a data: URL prefix, line breaks or padding."""
    text = text.strip()
    if text[:5].lower() == "data:":
        header, comma, text = text[5:].partition(",")
        if not comma or not header.lower().endswith(";base64"):
            raise BadRequest("'image' is a data URL but not a base64 one (data:image/...;base64,...)")
    compact = "".join(text.split())
    compact += "=" * (-len(compact) % 4)
    altchars = b"-_" if "-" in compact or "_" in compact else None
    try:
        return base64.b64decode(compact, altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"'image' is not valid base64: {exc}") from None


# ---------------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------------
def image_links(record: ImageRecord) -> dict:
    return {
        "thumbnail_url": url_for("api.thumbnail", image_id=record.id),
        "image_url": url_for("api.image_file", image_id=record.id),
    }


def hit_json(hit: Hit) -> dict:
    r = hit.record
    return {"id": r.id, "path": r.path, "name": r.name, "score": round(float(hit.score), 6),
            "width": r.width, "height": r.height, **image_links(r)}


def record_json(record: ImageRecord) -> dict:
    return {**record.to_dict(), **image_links(record)}


def results_json(hits: list[Hit], started: float) -> Response:
    return jsonify(results=[hit_json(h) for h in hits], took_ms=round((time.perf_counter() - started) * 1000, 3))


def indexed_record(image_id: str) -> ImageRecord:
    """The record of an indexed id. Only ids are accepted here: a client never names a file by path."""
    record = ctx().engine.store.get(image_id)
    if record is None:
        raise NotFound(f"no indexed image has the id {image_id!r}")
    return record


def indexed_file(record: ImageRecord) -> os.stat_result:
    """The stat of the record's file, checked to still be the regular file that was indexed.

    The stored path is a real path: if it (or a folder above it) is a symlink now, it was replaced after
    indexing and may point anywhere, so it is refused.
    """
    try:
        stat = os.lstat(record.path)
        moved = os.path.realpath(record.path) != record.path
    except (OSError, ValueError):
        raise NotFound(f"the file of {record.id} is no longer at {record.path}") from None
    if moved or not S_ISREG(stat.st_mode):
        raise NotFound(f"the file of {record.id} is no longer the regular file that was indexed")
    return stat


# ---------------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------------
api = Blueprint("api", __name__, url_prefix="/api")


@api.get("/health")
def health() -> Response:
    engine = ctx().engine
    info = engine.info()
    return jsonify(status="ok", backend=info["backend"], count=info["count"], model=info["model"],
                   model_label=info["model_label"], model_loaded=engine.model_loaded, version=info["version"])


@api.post("/search")
def search() -> Response:
    fields = request_fields()
    k, filters = search_params(fields)
    image = query_image(fields)
    started = time.perf_counter()
    return results_json(ctx().engine.search(image, k, filters), started)


@api.get("/images/<image_id>")
def image_record(image_id: str) -> Response:
    return jsonify(record_json(indexed_record(image_id)))


@api.get("/images/<image_id>/similar")
def similar(image_id: str) -> Response:
    k, filters = search_params(request.args)
    record = indexed_record(image_id)  # by id only: Engine.similar would also take a path
    started = time.perf_counter()
    return results_json(ctx().engine.similar(record.id, k, filters), started)


@api.get("/images/<image_id>/thumbnail")
def thumbnail(image_id: str) -> Response:
    record = indexed_record(image_id)
    mtime_ns = indexed_file(record).st_mtime_ns
    try:
        path = ctx().thumbnails.path(record.id, mtime_ns, record.path)
    except ImageError as exc:
        raise NotFound(f"the indexed file can no longer be decoded: {exc.reason}") from None
    except OSError as exc:
        raise ServiceUnavailable(f"cannot write the thumbnail cache in {ctx().thumbnails.folder}: {exc}") from None
    key = path.stem
    response = send_file(path, mimetype="image/jpeg", etag=key, conditional=True, max_age=THUMB_MAX_AGE_S)
    response.cache_control.public = False
    response.cache_control.private = True
    return response


@api.get("/images/<image_id>/file")
def image_file(image_id: str) -> Response:
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
    if not request.is_json:
        raise UnsupportedMediaType('send JSON with Content-Type application/json: {"paths": ["/a/folder"]}')
    paths = json_body().get("paths")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        raise BadRequest("'paths' must be a non-empty list of folder paths")
    if len(paths) > MAX_INDEX_PATHS:
        raise BadRequest(f"at most {MAX_INDEX_PATHS} paths per job")
    folders = [existing_folder(p) for p in paths]
    job = ctx().jobs.submit(folders)
    status_url = url_for("api.job_status", job_id=job.id)
    return jsonify(job_id=job.id, state=job.state, status_url=status_url), 202, {"Location": status_url}


def existing_folder(path: str) -> str:
    try:
        expanded = os.path.expanduser(path)
        if os.path.isdir(expanded):
            return os.path.realpath(expanded)
    except (OSError, ValueError):  # a NUL byte, a name too long, ...
        pass
    raise BadRequest(f"not an existing folder: {path!r}")


@api.get("/jobs")
def list_jobs() -> Response:
    return jsonify(jobs=ctx().jobs.all())


@api.get("/jobs/<job_id>")
def job_status(job_id: str) -> Response:
    job = ctx().jobs.get(job_id)
    if job is None:
        raise NotFound(f"no job has the id {job_id!r}")
    return jsonify(job)


@api.delete("/jobs/<job_id>")
def cancel_job(job_id: str) -> tuple[Response, int]:
    job = ctx().jobs.cancel(job_id)
    if job is None:
        raise NotFound(f"no job has the id {job_id!r}")
    # 202: a running job stops after its current file; poll the job for its final state.
    return jsonify(job), 202 if job["state"] in ("queued", "running") else 200


@api.get("/duplicates")
def duplicates() -> Response:
    low, high = DUPLICATE_THRESHOLD
    threshold = float_field(request.args, "threshold", low, high, default=0.95)
    groups = ctx().engine.duplicates(threshold)
    return jsonify(threshold=threshold, groups=[[record_json(r) for r in group] for group in groups])


@api.get("/openapi.json")
def openapi() -> Response:
    return jsonify(ctx().openapi)


def load_openapi(settings: Settings) -> dict:
    spec = json.loads((WEB_DIR / "openapi.json").read_text(encoding="utf-8"))
    spec["info"]["version"] = __version__
    # Tell clients whether this server wants the token (it checks it on every /api route when set).
    spec["security"] = [{"bearerAuth": []}] if settings.api_token else []
    return spec


# ---------------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------------
class _QuietHandler(WSGIRequestHandler):
    """No access log line per request (the desktop app embeds the server); errors are still logged."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def check_exposure(settings: Settings) -> None:
    """Binding beyond loopback exposes the index and every indexed file: only with a token."""
    if not is_loopback(settings.api_host) and not settings.api_token:
        raise ServerStartError(
            f"refusing to listen on {settings.api_host!r} without a token: anyone on the network could read "
            "every indexed image. Set api_token (--token or IMAGE_SEARCH_API_TOKEN), or bind 127.0.0.1."
        )


def bind_socket(host: str, port: int) -> socket.socket:
    family = select_address_family(host, port)
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        hint = " (another program uses that port; choose another with --port)" if exc.errno == 98 else ""
        raise ServerStartError(f"cannot listen on {host}:{port}: {reason}{hint}") from exc


class ApiServer:
    """The API served from a daemon thread: start() returns once listening, stop() returns within a second."""

    def __init__(self, engine: Engine, settings: Settings, *, log_requests: bool = False):
        check_exposure(settings)
        self.engine = engine
        self.settings = settings
        self.app = create_app(engine, settings)
        self._handler = WSGIRequestHandler if log_requests else _QuietHandler
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._server is not None:
            raise ServerStartError("the API server is already running")
        host, port = self.settings.api_host, self.settings.api_port
        # Bound here rather than by make_server, which prints and calls sys.exit() when the port is taken.
        sock = bind_socket(host, port)
        try:
            self._server = make_server(host, port, self.app, threaded=True, request_handler=self._handler,
                                       fd=sock.fileno())
        finally:
            sock.close()  # make_server holds its own duplicate of the descriptor
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="api-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=2)
        server.server_close()
        self.app.extensions[EXTENSION].jobs.shutdown(timeout=2)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the API server is not running")
        return self._server.port

    @property
    def url(self) -> str:
        host = self.settings.api_host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"  # a wildcard bind is reachable locally at loopback
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(settings: Settings) -> int:
    """The headless server of `image-search serve`: runs until Ctrl-C or SIGTERM; 0 then, 1 if it cannot start."""
    from core.engine import Engine

    try:
        check_exposure(settings)
    except ServerStartError as exc:
        print(f"image-search: error: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    engine = Engine(settings)
    try:
        server = ApiServer(engine, settings, log_requests=True)
        server.start()
    except ServerStartError as exc:
        engine.close()
        print(f"image-search: error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"Image search API and web page at {server.url}/ ({engine.store.count()} images; Ctrl-C to stop)",
          flush=True)
    threading.Thread(target=_warm_up, args=(engine,), name="model-warm-up", daemon=True).start()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        engine.close()
    print("stopped", flush=True)
    return 0


def _warm_up(engine: Engine) -> None:
    """Build the model now, so that the first search does not wait seconds for TensorFlow."""
    try:
        engine.extractor()
    except Exception as exc:  # noqa: BLE001 - reported again, as a 503, by the first search
        log.warning("the model could not be loaded: %s", exc)
