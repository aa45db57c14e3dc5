"""Handing files to the desktop: open, reveal in the file manager, copy paths, drag as URLs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from PySide6.QtCore import QMimeData, QProcess, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication

FILE_MANAGER = ("org.freedesktop.FileManager1", "/org/freedesktop/FileManager1", "org.freedesktop.FileManager1")


def open_file(path: str) -> bool:
    return QDesktopServices.openUrl(QUrl.fromLocalFile(path))


def reveal(path: str) -> bool:
    """Show the file selected in the system file manager (its folder, where that cannot be done)."""
    if sys.platform == "win32":
        return QProcess.startDetached("explorer", [f"/select,{os.path.normpath(path)}"])[0]
    if sys.platform == "darwin":
        return QProcess.startDetached("open", ["-R", path])[0]
    return _show_items_dbus(path) or QDesktopServices.openUrl(QUrl.fromLocalFile(os.path.dirname(path)))


def _show_items_dbus(path: str) -> bool:
    """The freedesktop FileManager1 interface (Nautilus, Dolphin, Nemo, Caja, Thunar) selects the file."""
    try:
        from PySide6.QtDBus import QDBusConnection, QDBusMessage
    except ImportError:
        return False
    bus = QDBusConnection.sessionBus()
    if not bus.isConnected() or not bus.interface().isServiceRegistered(FILE_MANAGER[0]).value():
        return False
    message = QDBusMessage.createMethodCall(*FILE_MANAGER, "ShowItems")
    message.setArguments([[QUrl.fromLocalFile(path).toString()], ""])
    return bus.send(message)  # asynchronous: the GUI never waits on the file manager


def copy_paths(paths: Iterable[str]) -> None:
    QGuiApplication.clipboard().setMimeData(file_mime(list(paths)))


def file_mime(paths: list[str]) -> QMimeData:
    """File URLs (what file managers and other apps accept on a drop) plus the paths as text."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(p) for p in paths])
    mime.setText("\n".join(paths))
    return mime


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
