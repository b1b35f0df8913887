"""Events per second over the part of the window that has elapsed.

>>> from watchkeeper.detectors.base import WindowView
>>> from watchkeeper.detectors.window import WindowSummary
>>> w = WindowSummary("m", "1", 0, 60_000); w.events = {"predictions": 120}
>>> Throughput().score(WindowView(w, None, 60.0)).value
2.0
"""

from __future__ import annotations

from typing import ClassVar

from watchkeeper.detectors.base import Score, WindowView
from watchkeeper.detectors.errors import InsufficientDataError


class Throughput:
    name: ClassVar[str] = "throughput_eps"

    def __init__(self, role: str = "predictions") -> None:
        self.role = role

    def score(self, view: WindowView) -> Score:
        if view.duration_s <= 0:
            raise InsufficientDataError("the window has not started")
        events = view.summary.events.get(self.role, 0)
        return Score(events / view.duration_s, {"events": events})
