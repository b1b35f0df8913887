"""Share of the current window's values in categories the reference never saw.

The categories are named in the details (the most frequent first), so an alert can say
*which* new values appeared, not only that some did.

>>> from watchkeeper.detectors.profile import CategoricalProfile
>>> from watchkeeper.detectors.category_counts import CategoryCounts
>>> ref = CategoricalProfile(count=100, nulls=0, proportions={"DE": 1.0})
>>> cur = CategoryCounts(); cur.update(["DE"] * 8 + ["BR", "BR"])
>>> s = UnseenMass().score(ref, cur); (s.value, s.details["categories"])
(0.2, {'BR': 2})
"""

from __future__ import annotations

from typing import ClassVar

from watchkeeper.detectors.base import Score
from watchkeeper.detectors.binning import binned
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.profile import ColumnProfile


class UnseenMass:
    name: ClassVar[str] = "unseen_mass"
    kinds: ClassVar[frozenset[str]] = frozenset({"categorical"})

    def __init__(self, report: int = 20) -> None:
        self.report = report

    def score(self, reference: ColumnProfile, current: ColumnSketch) -> Score:
        b = binned(reference, current)
        top = sorted(b.unseen.items(), key=lambda kv: (-kv[1], kv[0]))[: self.report]
        return Score(float(b.current[-1] / b.current.sum()), {"categories": dict(top)})
