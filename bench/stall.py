"""How long the Qt event loop goes without running: the GUI's largest stall (for tests and bench/gui.py)."""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer


class StallMeter:
    """A 10 ms timer whose largest gap between ticks is the longest the GUI thread was busy."""

    def __init__(self, interval_ms: int = 10):
        self._gaps: list[float] = []
        self._last = time.perf_counter()
        self._timer = QTimer()
        self._timer.timeout.connect(self._tick)
        self._timer.start(interval_ms)

    def _tick(self) -> None:
        now = time.perf_counter()
        self._gaps.append(now - self._last)
        self._last = now

    def stop(self) -> float:
        """Stop measuring; the largest gap in seconds."""
        self._timer.stop()
        return max(self._gaps, default=0.0)
