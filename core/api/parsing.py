"""Request parsing: fields from the query string, form or JSON body, numbers in range, the query image."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping

from flask import request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from core.api.context import ctx
from core.store.annotations import PhotoFilter
from core.store.base import SearchFilter

DEFAULT_K = 10
WORDS_ONLY_K = 50  # results of a words-only search (no image) unless k says otherwise
MAX_K = 1000
MAX_TEXT = 200  # characters of the text filter
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def raw_image_body() -> bool:
    """True when the body is the image itself (an image/* or application/octet-stream Content-Type)."""
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
    """Parameters from the query string, form fields and JSON body fields. A parameter may come from only
    one of them: the same name in two places is a BadRequest (which one was meant is a guess)."""
    fields: dict = dict(request.args.items())
    body: dict = dict(request.form.items()) if request.mimetype in FORM_TYPES else {}
    body.update(json_body())
    twice = sorted(name for name in body if name in fields)
    if twice:
        raise BadRequest(f"given both in the query string and in the body: {', '.join(twice)}")
    fields.update(body)
    return fields


def int_field(fields: Mapping, name: str, default: int, low: int, high: int) -> int:
    """fields[name] as an int in [low, high] (a JSON integer or its text); BadRequest otherwise."""
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
    """fields[name] as a finite float in [low, high] (a JSON number or its text); BadRequest otherwise."""
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


def search_params(fields: Mapping, default_min_score: float | None = None) -> tuple[int, SearchFilter]:
    """k (1..MAX_K, default DEFAULT_K) and the filters (scores are cosine similarities in [-1, 1])."""
    k = int_field(fields, "k", DEFAULT_K, 1, MAX_K)
    text = fields.get("text")
    if text is not None and not isinstance(text, str):
        raise BadRequest("'text' must be a string")
    if text is not None and len(text) > MAX_TEXT:
        raise BadRequest(f"'text' must be at most {MAX_TEXT} characters")
    exact = fields.get("exact", False)
    if isinstance(exact, str) and exact.lower() in ("true", "false", "1", "0"):
        exact = exact.lower() in ("true", "1")  # query strings and form fields carry text
    if not isinstance(exact, bool):
        raise BadRequest("'exact' must be true or false")
    return k, SearchFilter(
        min_score=float_field(fields, "min_score", -1.0, 1.0, default_min_score),
        max_score=float_field(fields, "max_score", -1.0, 1.0),
        text=(text or "").strip() or None,
        exact=exact,
    )


def photo_params(fields: Mapping) -> PhotoFilter:
    """`after`, `before` (ISO 8601 date or date-time, inclusive; a date-only `before` takes the whole day) and
    `camera` (words); BadRequest for a bad date or a non-string."""
    values = {}
    for name in ("after", "before", "camera"):
        value = fields.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
            raise BadRequest(f"'{name}' must be a string of at most {MAX_TEXT} characters")
        values[name] = (value or "").strip() or None
    try:
        return PhotoFilter.parse(**values)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def has_image(fields: Mapping) -> bool:
    """True when the request carries a query image in any of the forms query_image reads."""
    return "image" in request.files or raw_image_body() or fields.get("image") is not None


def query_image(fields: Mapping) -> bytes:
    """The image to search with: a multipart file, a raw image body, or base64 in the 'image' field.

    Raises BadRequest (none, empty, not base64) or RequestEntityTooLarge (over max_upload_mb)."""
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
