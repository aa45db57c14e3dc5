"""Guards around every request: the Host of a loopback server, the bearer token, the Origin of writes, CORS."""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from flask import Response, current_app, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, NotFound, Unauthorized

from core.api.context import ApiContext, ctx
from core.api.errors import error_response

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
PUBLIC_PATHS = {"/api/health"}  # health checks (a container's HEALTHCHECK) carry no token


def guard_request() -> Response | None:
    """Runs before every route. Returning a response ends the request there."""
    context = ctx()
    if context.loopback_only and not is_loopback(host_name(request.host)):
        # A loopback server answers only to loopback names: this defeats DNS rebinding, where a web
        # page re-points its own domain at 127.0.0.1 to read our responses as same-origin.
        return error_response(400, "Bad Request", f"unexpected Host {request.host!r}; use localhost or 127.0.0.1")
    if request.method == "OPTIONS":
        return preflight_response(context)  # preflights never carry credentials, so they come before auth
    if request.path.startswith("/api/") and request.path not in PUBLIC_PATHS and not token_given(context):
        raise Unauthorized("send the server's token as 'Authorization: Bearer <token>'",
                           www_authenticate=WWWAuthenticate("bearer", {"realm": "image-search"}))
    if request.method in UNSAFE_METHODS:
        check_origin(context)
    return None


def token_given(context: ApiContext) -> bool:
    """True when the server has no token, or the request carries it as 'Authorization: Bearer <token>'."""
    if context.token is None:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest takes time independent of where the strings differ: no timing oracle for the token.
    return scheme.lower() == "bearer" and hmac.compare_digest(header_bytes(given.strip()), context.token)


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
    """True when api_cors_origins lists `origin` (a trailing slash ignored) or is '*'."""
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
    # The original web client (core.api.compat) sends "Access-Control-Allow-Origin" as a request header.
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Access-Control-Allow-Origin"
    response.headers["Access-Control-Max-Age"] = "600"
    return response


def add_response_headers(response: Response) -> Response:
    """Runs after every route, errors included: nosniff, no referrer, and CORS for allowed origins."""
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
    """'http://a, http://b/' -> {'http://a', 'http://b'}; None or '' -> {} (CORS off)."""
    return frozenset(o.strip().rstrip("/") for o in (value or "").split(",") if o.strip())


def host_name(host: str) -> str:
    """The name part of a Host header: 'a:1' -> 'a', '[::1]:5000' -> '::1'."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    """True for 'localhost', '*.localhost' and loopback IPv4/IPv6 addresses (brackets allowed)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
