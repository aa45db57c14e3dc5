"""Errors: every /api answer is JSON, errors too: {"error", "detail", "status"}."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError, NotFound, RequestEntityTooLarge

from core.api.context import ctx
from core.errors import HTTP_STATUS, UserError

log = logging.getLogger(__name__)


def error_response(status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    """The JSON error answer: `error` is the status' name or a short title, `detail` says why for users."""
    response = jsonify(error=error, detail=detail, status=status)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def register_error_handlers(app: Flask) -> None:
    """Map HTTP errors and the engine's exceptions to statuses: bad image 400, unknown id 404, index of
    another model 409, index or model unavailable 503, anything else 500 (details only in the log)."""
    app.register_error_handler(HTTPException, on_http_error)
    app.register_error_handler(UserError, lambda e: error_response(HTTP_STATUS[e.kind], e.title, str(e)))
    app.register_error_handler(LookupError, on_lookup_error)
    app.register_error_handler(Exception, on_unexpected_error)


def on_http_error(exc: HTTPException) -> Response:
    """An HTTP error as JSON, keeping its own headers (Allow, WWW-Authenticate); 413 and 404 say why."""
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
    """404 for an id or path not in the index; KeyError and IndexError are bugs (500)."""
    # KeyError and IndexError are LookupErrors too, but from them it's a bug of ours, not a missing image.
    if isinstance(exc, KeyError | IndexError):
        return on_unexpected_error(exc)
    return error_response(404, "Not Found", str(exc) or "not in the index")


def on_unexpected_error(exc: Exception) -> Response:
    """500 without internals: the traceback goes to the server log only."""
    if isinstance(exc, HTTPException):  # pragma: no cover - routed to on_http_error by Flask
        return on_http_error(exc)
    log.exception("unexpected error in %s %s", request.method, request.path)
    return error_response(500, InternalServerError.name, "an unexpected error occurred; see the server log")
