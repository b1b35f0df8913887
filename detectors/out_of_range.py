"""Share of current values outside the reference's [min, max], widened by a margin.

The range is [min − m·(max − min), max + m·(max − min)], m = ``margin`` (default 0.1:
10 % of the reference's range on each side), so a value a hair past the training
extremes is not an alarm but an order-of-magnitude unit change is. The exact min and max
of the window settle the common case (nothing outside) exactly; otherwise the share comes
from the window's KLL CDF.

>>> import numpy as np
>>> from watchkeeper.detectors.profile import numeric_profile
>>> from watchkeeper.detectors.sketches import NumericSketch
>>> ref, cur = NumericSketch(), NumericSketch()
>>> ref.update(np.arange(0.0, 101.0)); cur.update(np.array([50.0, 105.0, 111.0, 500.0]))
>>> OutOfRange().score(numeric_profile(ref, ()), cur).value
0.5
"""

from __future__ import annotations

from typing import ClassVar

from watchkeeper.detectors.base import Score
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.profile import ColumnProfile, NumericProfile
from watchkeeper.detectors.sketches import NumericSketch


class OutOfRange:
    name: ClassVar[str] = "out_of_range_rate"
    kinds: ClassVar[frozenset[str]] = frozenset({"numeric"})

    def __init__(self, margin: float = 0.1) -> None:
        self.margin = margin

    def score(self, reference: ColumnProfile, current: ColumnSketch) -> Score:
        if not isinstance(reference, NumericProfile) or not isinstance(current, NumericSketch):
            raise InsufficientDataError("out_of_range_rate applies to numeric columns")
        if reference.count == 0 or current.count == 0:
            raise InsufficientDataError("no finite values to compare")
        width = reference.max - reference.min
        lo = reference.min - self.margin * width
        hi = reference.max + self.margin * width
        details = {"low": lo, "high": hi, "min": current.min, "max": current.max}
        if current.min >= lo and current.max <= hi:
            return Score(0.0, details)
        below, at_hi = current.cdf([lo, hi])
        # the CDF at lo counts values equal to lo, which are inside: negligible for floats
        below = below if current.min < lo else 0.0
        above = 1.0 - at_hi if current.max > hi else 0.0
        return Score(float(min(1.0, below + above)), details)
