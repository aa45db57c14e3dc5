"""The HTTP API and the web page: a Flask app over one Engine (`create_app`); core.server serves it.

Every response an /api client can get is JSON (errors too: {"error", "detail", "status"}), except the
image bytes of /thumbnail and /file. The description of all of it is resources/web/openapi.json, served
at /api/openapi.json. Modules: app (the factory), context (what handlers share), errors, security (Host,
token, Origin, CORS), parsing, shapes (the JSON of hits and records), routes.
"""

from core.api.app import create_app

__all__ = ["create_app"]
