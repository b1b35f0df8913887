"""Pearson's χ² statistic of the current counts against the reference proportions.

χ² = Σᵢ (Oᵢ − Eᵢ)² / Eᵢ with Eᵢ = n · pᵢ on the reference's buckets (categories, or bins
for numeric columns); the p-value (χ² with k − 1 degrees of freedom) is in the details.
A significance test: at large n it flags differences of no practical size, so it is not
a default; use PSI or JS distance with thresholds for large windows, χ² for small ones.

>>> from watchkeeper.detectors.profile import CategoricalProfile
>>> from watchkeeper.detectors.category_counts import CategoryCounts
>>> ref = CategoricalProfile(count=100, nulls=0, proportions={"a": 0.5, "b": 0.5})
>>> cur = CategoryCounts(); cur.update(["a"] * 60 + ["b"] * 40)
>>> round(ChiSquare().score(ref, cur).value, 2)
4.0
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from watchkeeper.detectors.base import Score
from watchkeeper.detectors.binning import binned
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.profile import ColumnProfile


class ChiSquare:
    name: ClassVar[str] = "chi2"
    kinds: ClassVar[frozenset[str]] = frozenset({"numeric", "categorical"})

    def __init__(self, epsilon: float = 1e-4) -> None:
        self.epsilon = epsilon

    def score(self, reference: ColumnProfile, current: ColumnSketch) -> Score:
        b = binned(reference, current)
        used = (b.reference > 0) | (b.current > 0)
        p = np.where(b.reference > 0, b.reference, self.epsilon)[used]
        observed = b.current[used]
        expected = observed.sum() * p / p.sum()
        statistic = float(np.sum((observed - expected) ** 2 / expected))
        dof = max(int(used.sum()) - 1, 1)
        from scipy import stats  # imported when a χ² test first runs: ~40 MB, not at start

        p_value = float(stats.chi2.sf(statistic, dof))
        return Score(statistic, {"p_value": p_value, "dof": dof, "bins": dof + 1})
