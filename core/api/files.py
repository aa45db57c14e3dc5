"""The files behind indexed ids: served only for an id, only while they are still the file that was indexed."""

from __future__ import annotations

import os
from pathlib import Path
from stat import S_ISREG

from werkzeug.exceptions import NotFound, ServiceUnavailable

from core.api.context import ctx
from core.images import ImageError
from core.store.base import ImageRecord
from core.thumbnails import stat_version


def indexed_record(image_id: str) -> ImageRecord:
    """The record of an indexed id. Only ids are accepted here: a client never names a file by path."""
    record = ctx().engine.store.get(image_id)
    if record is None:
        raise NotFound(f"no indexed image has the id {image_id!r}")
    return record


def indexed_file(record: ImageRecord) -> os.stat_result:
    """The stat of the record's file, checked to still be the regular file that was indexed.

    The stored path is a real path: if it (or a folder above it) is a symlink now, it was replaced after
    indexing and may point anywhere, so it is refused (NotFound).
    """
    try:
        stat = os.lstat(record.path)
        moved = os.path.realpath(record.path) != record.path
    except (OSError, ValueError):
        raise NotFound(f"the file of {record.id} is no longer at {record.path}") from None
    if moved or not S_ISREG(stat.st_mode):
        raise NotFound(f"the file of {record.id} is no longer the regular file that was indexed")
    return stat


def thumbnail_file(record: ImageRecord) -> Path:
    """The cached JPEG thumbnail of the record's file (made now if needed). NotFound when the file is gone or
    no longer decodes, ServiceUnavailable when the cache cannot be written."""
    version = stat_version(indexed_file(record))
    try:
        return ctx().thumbnails.path(record.id, version, record.path)
    except ImageError as exc:
        raise NotFound(f"the indexed file can no longer be decoded: {exc.reason}") from None
    except OSError as exc:
        raise ServiceUnavailable(f"cannot write the thumbnail cache in {ctx().thumbnails.folder}: {exc}") from None
