"""Schema drift, one side: reference features that the window's events no longer carry.

The value is how many are absent (named in the details); a feature counts as absent when
no event of the window had its key.

>>> import numpy as np
>>> from watchkeeper.detectors.base import WindowView
>>> from watchkeeper.detectors.profile import CategoricalProfile, ReferenceProfile
>>> from watchkeeper.detectors.category_counts import CategoryCounts
>>> from watchkeeper.detectors.window import WindowSummary
>>> c = CategoricalProfile(count=1, nulls=0, proportions={"x": 1.0})
>>> ref = ReferenceProfile("m", {"a": c, "b": c}, rows=1)
>>> w = WindowSummary("m", "1", 0, 1); w.features["a"] = CategoryCounts()
>>> w.features["a"].update(["x"])
>>> s = MissingFeatures().score(WindowView(w, ref, 1.0)); (s.value, s.details)
(1.0, {'features': ['b']})
"""

from __future__ import annotations

from typing import ClassVar

from watchkeeper.detectors.base import Score, WindowView
from watchkeeper.detectors.errors import InsufficientDataError


class MissingFeatures:
    name: ClassVar[str] = "missing_features"

    def score(self, view: WindowView) -> Score:
        if view.reference is None:
            raise InsufficientDataError("missing_features needs a reference")
        present = {n for n, s in view.summary.features.items() if s.total > 0}
        missing = sorted(set(view.reference.features) - present)
        return Score(float(len(missing)), {"features": missing})
