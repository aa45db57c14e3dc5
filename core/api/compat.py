"""The original project's web client, served unchanged from its own origin.

It posts `{"image": "<base64>"}` to /api/search (with a request header `Access-Control-Allow-Origin: *`,
which security.preflight_response allows) and reads `images_data` (one base64 image per hit, best first,
drawn as `data:image/png;base64,...`) or `message` when nothing matched. Such a request, a JSON body holding
only `image`, gets the original threshold and today's response plus those fields.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping

from flask import Response, jsonify, request
from werkzeug.exceptions import HTTPException

from core.api.files import thumbnail_file
from core.api.parsing import FORM_TYPES, raw_image_body
from core.store.base import Hit

log = logging.getLogger(__name__)

ORIGINAL_MIN_SCORE = 0.5  # the original project's similarity threshold (cosine); its k was 10, ours by default
NO_MATCH = f"No similar images found: no indexed image has a similarity of {ORIGINAL_MIN_SCORE} or more."


def is_original_request(fields: Mapping) -> bool:
    """True for the original client's request: a JSON body holding only `image`, no query parameters."""
    return (set(fields) == {"image"} and not request.args and request.mimetype not in FORM_TYPES
            and not raw_image_body())


def original_results(hits: list[Hit], payload: dict) -> Response:
    """Today's {"results", "took_ms"} plus `images_data` (base64 JPEG thumbnails, at most 320 px a side, in
    the order of `results`; null for a hit whose file can no longer be read), or plus `message` when there
    are no hits. `payload` is the search's usual answer for `hits`. Browsers sniff image bytes, so the
    client's data:image/png URLs show the JPEGs."""
    if not hits:
        return jsonify(message=NO_MATCH, **payload)
    return jsonify(**payload, images_data=[thumbnail_base64(hit) for hit in hits])


def thumbnail_base64(hit: Hit) -> str | None:
    """The hit's cached thumbnail in base64, or None (logged) when it cannot be made: one bad file never
    costs the other hits their images."""
    try:
        return base64.b64encode(thumbnail_file(hit.record).read_bytes()).decode("ascii")
    except (HTTPException, OSError) as exc:
        log.warning("no thumbnail for %s: %s", hit.record.id, getattr(exc, "description", exc))
        return None
