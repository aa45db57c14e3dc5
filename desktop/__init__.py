"""The PySide6 desktop app (see app.py)."""
