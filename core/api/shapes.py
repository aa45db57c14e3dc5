"""The JSON of hits and records: every one the API sends goes through record_json or hit_json."""

from __future__ import annotations

import time

from flask import Response, jsonify, url_for

from core.store.base import Hit, ImageRecord


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
