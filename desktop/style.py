"""The look: Fusion with a light palette, the style sheet and the icons in resources/desktop."""

from __future__ import annotations

from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication

from core.assets import resources_path

MIN_POINT_SIZE = 10  # offscreen and bare X servers default to 9 pt, small for thumbnails' captions


def icon(name: str) -> QIcon:
    path = resources_path("desktop", "icons", f"{name}.svg")
    return QIcon(str(path)) if path.is_file() else QIcon()


def apply_style(app: QApplication) -> None:
    # Fusion looks the same on every platform and honours the palette (native styles may ignore it).
    app.setStyle("Fusion")
    palette = app.palette()
    colours = {
        QPalette.ColorRole.Window: "#f4f5f7",
        QPalette.ColorRole.Base: "#ffffff",
        QPalette.ColorRole.AlternateBase: "#e9ecf0",
        QPalette.ColorRole.Text: "#1f2933",
        QPalette.ColorRole.WindowText: "#1f2933",
        QPalette.ColorRole.ButtonText: "#1f2933",
        QPalette.ColorRole.Highlight: "#2f6fdb",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.PlaceholderText: "#7a8594",
        QPalette.ColorRole.Link: "#2f6fdb",
    }
    for role, colour in colours.items():
        palette.setColor(role, QColor(colour))
    app.setPalette(palette)
    font = app.font()
    if font.pointSizeF() < MIN_POINT_SIZE:
        font.setPointSizeF(MIN_POINT_SIZE)
        app.setFont(font)
    sheet = resources_path("desktop", "style.qss")
    if sheet.is_file():
        app.setStyleSheet(sheet.read_text(encoding="utf-8"))
    app.setWindowIcon(icon("app"))
