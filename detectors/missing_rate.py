"""Share of events that lack a feature's key altogether (schema drift, not a null value).

>>> from watchkeeper.detectors.profile import CategoricalProfile
>>> from watchkeeper.detectors.category_counts import CategoryCounts
>>> c = CategoryCounts(); c.update(["a", "b", "c"], missing=1)
>>> MissingRate().score(CategoricalProfile(count=1, nulls=0, proportions={"a": 1.0}), c).value
0.25
"""

from __future__ import annotations

from typing import ClassVar

from watchkeeper.detectors.base import Score
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.profile import ColumnProfile


class MissingRate:
    name: ClassVar[str] = "missing_rate"
    kinds: ClassVar[frozenset[str]] = frozenset({"numeric", "categorical"})

    def score(self, reference: ColumnProfile, current: ColumnSketch) -> Score:
        seen = current.total + current.missing
        if seen == 0:
            raise InsufficientDataError("no events")
        return Score(current.missing / seen)
