"""The app factory: the /api routes, the web page at /, JSON errors everywhere, the guards around them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, Response, send_file

from core import __version__
from core.api.context import EXTENSION, ApiContext
from core.api.errors import register_error_handlers
from core.api.routes import api
from core.api.security import add_response_headers, guard_request, is_loopback, parse_origins
from core.assets import resources_path
from core.config import Settings
from core.jobs import queue_for
from core.thumbnails import ThumbnailCache

if TYPE_CHECKING:
    from core.engine import Engine

WEB_DIR = resources_path("web")
THUMB_SIZE = 256  # px, the longer side of /thumbnail
MB = 1024 * 1024


def create_app(engine: Engine, settings: Settings) -> Flask:
    """The Flask app for `engine`: the /api routes, the web page at /, and JSON errors everywhere.

    Raises OSError when the OpenAPI document cannot be read (a broken install)."""
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
        jobs=queue_for(engine),
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


def serve_page() -> Response:
    """The web page (resources/web/index.html) with a Content-Security-Policy allowing only its own files."""
    response = send_file(WEB_DIR / "index.html", mimetype="text/html", max_age=0)
    # The page loads only its own script and style; images may also be blob: URLs (token mode).
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
    return response


def load_openapi(settings: Settings) -> dict:
    """resources/web/openapi.json with this version, and `security` saying whether the token is wanted."""
    spec = json.loads((WEB_DIR / "openapi.json").read_text(encoding="utf-8"))
    spec["info"]["version"] = __version__
    # Tell clients whether this server wants the token (it checks it on every /api route when set).
    spec["security"] = [{"bearerAuth": []}] if settings.api_token else []
    return spec
