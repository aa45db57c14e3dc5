"""The JSON of hits and records: every one the API sends goes through record_json or hit_json.

The fields are those of the one JSON shape of a record (the CLI's `--json` uses it too), plus the links the
API adds: `thumbnail_url` and `image_url`.
"""

from __future__ import annotations

import time

from flask import Response, jsonify, url_for

from core.store.base import Hit, ImageRecord
from core.store.base import record_json as store_record_json


def image_links(record: ImageRecord) -> dict:
    """The record's /thumbnail and /file URLs (needs a request or app context for url_for)."""
    return {
        "thumbnail_url": url_for("api.thumbnail", image_id=record.id),
        "image_url": url_for("api.image_file", image_id=record.id),
    }


def record_json(record: ImageRecord) -> dict:
    """The record's JSON shape plus its links (needs a request or app context for url_for)."""
    return {**store_record_json(record), **image_links(record)}


def hit_json(hit: Hit) -> dict:
    """The record's JSON shape plus `score` (cosine similarity, rounded to 6 decimals) and its links."""
    return {**store_record_json(hit.record), "score": round(float(hit.score), 6), **image_links(hit.record)}


def results_payload(hits: list[Hit], started: float) -> dict:
    """{"results": [hit_json, ...], "took_ms": milliseconds since `started` (time.perf_counter)}."""
    return {"results": [hit_json(h) for h in hits], "took_ms": round((time.perf_counter() - started) * 1000, 3)}


def results_json(hits: list[Hit], started: float) -> Response:
    """results_payload as the response."""
    return jsonify(results_payload(hits, started))
