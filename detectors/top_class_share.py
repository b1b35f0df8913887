"""Collapsed classifier: the share of the most frequent predicted class.

A model that starts answering one class for everything (a broken feature pipeline, a
default value) shows as this share nearing 1. Uses the predicted class of probability
vectors, or the categorical prediction itself.

>>> from watchkeeper.detectors.base import WindowView
>>> from watchkeeper.detectors.category_counts import CategoryCounts
>>> from watchkeeper.detectors.window import WindowSummary
>>> w = WindowSummary("m", "1", 0, 1); w.prediction_class = CategoryCounts()
>>> w.prediction_class.update(["0"] * 97 + ["1"] * 3)
>>> s = TopClassShare().score(WindowView(w, None, 1.0)); (s.value, s.details["class"])
(0.97, '0')
"""

from __future__ import annotations

from typing import ClassVar

from watchkeeper.detectors.base import Score, WindowView
from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.errors import InsufficientDataError


class TopClassShare:
    name: ClassVar[str] = "prediction_top_class_share"

    def score(self, view: WindowView) -> Score:
        sketch = view.summary.prediction_class or view.summary.prediction
        if not isinstance(sketch, CategoryCounts) or sketch.count == 0:
            raise InsufficientDataError("no predicted classes in the window")
        top, count = max(sketch.counts.items(), key=lambda kv: (kv[1], kv[0]))
        return Score(count / sketch.count, {"class": top})
