"""What the request handlers of one app share, kept in `app.extensions`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

from core.config import Settings
from core.jobs import JobQueue
from core.thumbnails import ThumbnailCache

if TYPE_CHECKING:
    from core.engine import Engine

EXTENSION = "image_search"


@dataclass
class ApiContext:
    """One per app (create_app builds it)."""

    engine: Engine
    settings: Settings
    jobs: JobQueue
    thumbnails: ThumbnailCache
    upload_limit: int  # bytes of image data
    token: bytes | None
    cors_origins: frozenset[str]
    loopback_only: bool  # bound to loopback: answer only requests addressed to a loopback host
    openapi: dict
    model_error: str | None = None  # why building the model failed (core.server.ApiServer.warm_up), if it did


def ctx() -> ApiContext:
    """The context of the app handling the current request."""
    return current_app.extensions[EXTENSION]
