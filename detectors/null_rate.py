"""Share of nulls among a column's values (present keys whose value is null).

>>> from watchkeeper.detectors.profile import CategoricalProfile
>>> from watchkeeper.detectors.category_counts import CategoryCounts
>>> c = CategoryCounts(); c.update(["a", "b", "c"], nulls=1)
>>> NullRate().score(CategoricalProfile(count=1, nulls=0, proportions={"a": 1.0}), c).value
0.25
"""

from __future__ import annotations

from typing import ClassVar

from watchkeeper.detectors.base import Score
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.profile import ColumnProfile


class NullRate:
    name: ClassVar[str] = "null_rate"
    kinds: ClassVar[frozenset[str]] = frozenset({"numeric", "categorical"})

    def score(self, reference: ColumnProfile, current: ColumnSketch) -> Score:
        if current.total == 0:
            raise InsufficientDataError("no values")
        ref = reference.nulls / reference.total if reference.total else 0.0
        return Score(current.nulls / current.total, {"reference": ref})
