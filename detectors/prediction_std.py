"""Collapsed regressor or scorer: the standard deviation of the numeric prediction.

A value near 0 means the model returns (nearly) the same score for every request. The
reference's standard deviation is in the details, for a relative threshold.

>>> import numpy as np
>>> from watchkeeper.detectors.base import WindowView
>>> from watchkeeper.detectors.sketches import NumericSketch
>>> from watchkeeper.detectors.window import WindowSummary
>>> w = WindowSummary("m", "1", 0, 1); w.prediction = NumericSketch()
>>> w.prediction.update(np.full(50, 0.5))
>>> PredictionStd().score(WindowView(w, None, 1.0)).value
0.0
"""

from __future__ import annotations

import math
from typing import ClassVar

from watchkeeper.detectors.base import Score, WindowView
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.profile import NumericProfile
from watchkeeper.detectors.sketches import NumericSketch


class PredictionStd:
    name: ClassVar[str] = "prediction_std"

    def score(self, view: WindowView) -> Score:
        sketch = view.summary.prediction
        if not isinstance(sketch, NumericSketch) or sketch.count < 2:
            raise InsufficientDataError("fewer than two numeric predictions in the window")
        ref = view.reference.prediction if view.reference else None
        details = {"reference": ref.std} if isinstance(ref, NumericProfile) else {}
        return Score(math.sqrt(max(sketch.variance, 0.0)), details)
