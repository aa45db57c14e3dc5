"""Refuse a PySide6 build that corrupts Python's reference counts (measured here, not matched by version)."""

from __future__ import annotations

import sys

import PySide6
from PySide6.QtCore import QObject

FIX = "pip install 'pyside6-essentials>=6.8,<6.12'"


def broken_pyside() -> str | None:
    """Why this PySide6 cannot run the app, or None when it can.

    PySide6 6.12.0 on Python 3.11 drops a reference to None on every call of a method returning void
    (and to True on every Signal.emit). None starts with a few thousand references, so an app aborts
    after a few thousand calls ("Fatal Python error: none_dealloc"). On Python 3.12+ None is immortal
    and the measurement below finds nothing."""
    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(10):
        probe.setObjectName("probe")
    if sys.getrefcount(None) >= before:
        return None
    return (f"PySide6 {PySide6.__version__} corrupts reference counts on Python "
            f"{sys.version_info.major}.{sys.version_info.minor} and would crash the app; install another "
            f"version: {FIX}")
