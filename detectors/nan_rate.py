"""Share of NaN and ±inf among a numeric column's values: a model server's silent failure.

>>> import numpy as np
>>> from watchkeeper.detectors.profile import numeric_profile
>>> from watchkeeper.detectors.sketches import NumericSketch
>>> s = NumericSketch(); s.update(np.array([1.0, np.nan, np.inf, 2.0]))
>>> NanRate().score(numeric_profile(s, ()), s).value
0.5
"""

from __future__ import annotations

from typing import ClassVar

from watchkeeper.detectors.base import Score
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.profile import ColumnProfile, NumericProfile
from watchkeeper.detectors.sketches import NumericSketch


class NanRate:
    name: ClassVar[str] = "nan_rate"
    kinds: ClassVar[frozenset[str]] = frozenset({"numeric"})

    def score(self, reference: ColumnProfile, current: ColumnSketch) -> Score:
        if not isinstance(current, NumericSketch) or current.total == 0:
            raise InsufficientDataError("no numeric values")
        rate = (current.nans + current.infs) / current.total
        ref = (
            reference.nans / reference.total
            if (isinstance(reference, NumericProfile) and reference.total)
            else 0.0
        )
        return Score(rate, {"reference": ref, "nans": current.nans, "infs": current.infs})
